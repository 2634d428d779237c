"""`releaser serve`: the web dashboard on the state this configuration names."""

from __future__ import annotations

import click

from ..errors import UsageError
from .app import App
from .base import cli, command

MIN_SECRET = 32


@command(
    cli,
    examples=(
        "RELEASER_DASHBOARD_SECRET=$(openssl rand -base64 32) releaser serve",
        "releaser serve --listen 10.0.0.5:8080   # told to leave loopback",
        "releaser serve --hash-password   # a password's hash for dashboard.users",
    ),
)
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT", help="Where to listen.")
@click.option("--hash-password", is_flag=True, help="Read a password (twice) and print its hash for dashboard.users.")
def serve(app: App, listen: str, hash_password: bool) -> None:
    """Serve the dashboard: what runs where, releases and their stages, the live stage's
    evidence, the journal, approvals, windows, reports and drills; signed-in users approve,
    reject, abort, roll back and unlock as themselves."""
    if hash_password:
        from ..passwords import hash_password as slow_hash

        password = click.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
        if len(password) < 10:
            raise UsageError("a dashboard password has at least 10 characters")
        click.echo(slow_hash(password))
        return
    from .. import secrets
    from ..alerts import parse_address

    try:
        host, port = parse_address(listen)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    config = app.config()
    spec = config.dashboard
    if spec is None:
        raise UsageError(
            f"{config.path.name} has no `dashboard:` section: name its users there "
            "(README: The dashboard), with password hashes from `releaser serve --hash-password`"
        )
    secret = secrets.read_env(spec.secret_env)
    if len(secret) < MIN_SECRET:
        raise UsageError(
            f"${spec.secret_env} must hold a secret of at least {MIN_SECRET} characters (it signs forms and "
            "approval links; every server and runner of this project shares it): `openssl rand -base64 32`"
        )
    import uvicorn

    from ..web.app import Dashboard, build

    dashboard = Dashboard(
        config, app.store(), app.journal(), secret, secure=bool(spec.url and spec.url.startswith("https://"))
    )
    app.out.say(f"the dashboard of {config.project} on http://{listen}/ (Ctrl-C stops it)")
    server = uvicorn.Server(
        uvicorn.Config(
            build(dashboard),
            host=host,
            port=port,
            log_level="warning",
            proxy_headers=False,  # the peer's address is what the proxy check reads: never a header
            server_header=False,
            timeout_graceful_shutdown=2,
        )
    )
    server.run()
    if not server.started:
        raise UsageError(f"--listen {listen}: could not listen there (in use, or not this machine's address)")
