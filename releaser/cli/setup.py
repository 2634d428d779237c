"""Starting out: scaffold a configuration, validate it, print a shell's completion script, run
the sandbox demo."""

from __future__ import annotations

from pathlib import Path

import click

from .app import App
from .base import cli, command


@command(
    cli,
    examples=(
        "releaser validate",
        "releaser validate --connect   # and every host, as a stage would",
        "releaser -c staging.yaml validate --json",
    ),
)
@click.option(
    "--connect",
    is_flag=True,
    help="Also connect to every host and check it can be worked on "
    "(keys, host keys, the root, sudo); exit 2 for a mistake, 4 for a host out of reach.",
)
def validate(app: App, connect: bool) -> None:
    """Check environments.yaml, its playbooks and check sets, and the SSH files they name; exit 2
    on any problem."""
    from ..errors import ConfigError
    from ..preflight import check_every_host, local_problems

    config = app.config()
    problems = local_problems(config)
    if problems:
        raise ConfigError(problems)
    if connect:
        from ..transport import transport_for

        check_every_host(config, transport_for)
    from ..config import unset_variables
    from ..config.dashboard import approvers_not_users

    for unset in unset_variables(config):
        app.out.warn(unset)
    for stage, name in approvers_not_users(config):
        app.out.warn(
            f"{stage}'s approvers name {name}, who is not under dashboard.users: a typo, or someone who approves "
            "from a terminal only (`releaser approve`)"
        )
    hosts = sum(len(env.hosts) for env in config.environments.values())
    app.out.result(
        f"{config.path.name}: ok — {len(config.environments)} environment(s), {hosts} host(s)"
        + (" reached and ready" if connect else "")
        + f", pipeline {' -> '.join(config.stage_names())}",
        "green",
    )
    app.out.emit(
        {
            "ok": True,
            "config": str(config.path),
            "environments": {
                name: {"transport": env.transport, "hosts": [h.name for h in env.hosts], "playbook": env.playbook}
                for name, env in config.environments.items()
            },
            "pipeline": [
                {"stage": s.name, "environment": s.environment, "checks": [c.name for c in s.checks]}
                for s in config.pipeline
            ],
        }
    )


@command(
    cli,
    examples=(
        "releaser init",
        "releaser init deploy/ && cd deploy && releaser validate",
        "releaser init --router nginx   # prod behind nginx, gray to 10% of users",
    ),
)
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False))
@click.option("--router", type=click.Choice(["nginx"]), help="Put prod behind this load balancer (gray by users).")
def init(app: App, directory: str, router: str | None) -> None:
    """Scaffold a working configuration in an empty DIRECTORY."""
    from ..scaffold import scaffold

    written = scaffold(Path(directory), router)
    for path in written:
        app.out.result(f"wrote {path}")
    app.out.say(
        "next: `releaser validate`; pack your app (`tar czf app.tar.gz -C YOUR_APP_DIR .`: until your hooks "
        "start it, the starter's placeholder app runs), register it (`releaser release create 0.1.0 --artifact "
        "app.tar.gz`) and `releaser run 0.1.0`; every key is documented in environments.example.yaml"
    )
    app.out.emit({"ok": True, "written": [str(p) for p in written]})


@command(
    cli,
    "completion",
    examples=(
        'eval "$(releaser completion bash)"   # in ~/.bashrc',
        "releaser completion fish > ~/.config/fish/completions/releaser.fish",
    ),
)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(app: App, shell: str) -> None:
    """Print the shell completion script: commands, options, environments and release versions."""
    from click.shell_completion import BashComplete, FishComplete, ZshComplete

    complete = {"bash": BashComplete, "zsh": ZshComplete, "fish": FishComplete}[shell]
    click.echo(complete(cli, {}, "releaser", "_RELEASER_COMPLETE").source())


@command(cli, examples=("releaser demo", "releaser demo --dir /tmp/sandbox"))
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False), help="Where to build the sandbox (default: a temp dir)."
)
def demo(app: App, directory: str | None) -> None:
    """Build a sandbox fleet on this machine and run three releases through it."""
    from ..demo.run import run_demo

    summary = run_demo(
        Path(directory) if directory else None, app.out.say, app.show_event, app.out.tick if app.out.live else None
    )
    app.out.emit({"ok": True, **summary})
