"""`releaser serve`: the web dashboard on the state this configuration names."""

from __future__ import annotations

import click

from ..errors import UsageError
from .app import App
from .base import cli, command

MIN_SECRET = 32
MIN_PROXY_SECRET = 16


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
        import sys

        from ..passwords import hash_password as slow_hash

        if sys.stdin.isatty():
            password = click.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
        else:  # a script: one line on stdin
            password = sys.stdin.readline().rstrip("\n")
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
            f"${spec.secret_env} "
            + ("is not set" if not secret else f"holds {len(secret)} characters")
            + f": it must hold a secret of at least {MIN_SECRET} characters (it signs forms and approval links; "
            "every server and promoting runner of this project shares it): `openssl rand -base64 32`"
        )
    proxy_secret = secrets.read_env(spec.proxy_secret_env) if spec.proxy_secret_env else ""
    if spec.proxy_header and len(proxy_secret) < MIN_PROXY_SECRET:
        raise UsageError(
            f"${spec.proxy_secret_env} must hold the secret the proxy sends in X-Releaser-Proxy (at least "
            f"{MIN_PROXY_SECRET} characters): `openssl rand -base64 24`"
        )
    _can_listen(host, port, listen)
    import uvicorn

    from ..web.app import Dashboard, build

    dashboard = Dashboard(
        config,
        app.store(),
        app.journal(),
        secret,
        secure=bool(spec.url and spec.url.startswith("https://")),
        proxy_secret=proxy_secret,
        warn=app.out.warn,
    )
    shown = f"every address of this machine, port {port}" if host in ("0.0.0.0", "::") else f"http://{listen}/"  # noqa: S104 - naming it, not binding
    app.out.say(f"the dashboard of {config.project} on {shown} (Ctrl-C stops it)")
    if not _loopback(host):
        app.out.warn(
            f"{listen} is reachable from other machines over plain HTTP: passwords and cookies travel in clear; "
            "put it behind a TLS proxy (README: The dashboard) or listen on 127.0.0.1"
        )
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
    import signal

    # uvicorn stops on SIGTERM or SIGINT, then raises the signal again for whoever handled it before:
    # for a server, that is its normal end (systemd's stop), not an interruption (exit 0)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    app.out.say("the dashboard stopped")


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _can_listen(host: str, port: int, listen: str) -> None:
    """Refuse, before saying anything else, an address in use or not this machine's (exit 2)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"--listen {listen}: {exc.strerror} (another server there, or not this machine's address)"
            ) from None
