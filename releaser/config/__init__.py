"""Load and validate environments.yaml, playbooks/*.yaml and healthchecks/*.yaml.

Validation collects every problem (file, line, key) before failing, and loading has no
side effects: nothing is written while or after reading configuration. One module per section
of the YAML; plugin sections (checks, metric sources, routers) are read by their kinds.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import secrets
from ..errors import ConfigError, ConfigProblem
from ..model import Config, Environment, Freeze
from ..schema import Fields, Problems, shown
from ..yamlsrc import load_yaml
from .context import Context, display
from .dashboard import read_dashboard
from .environments import check_shared_roots, read_environment
from .hosts import shared_environment_keys, with_defaults
from .notify import read_webhooks
from .pipeline import read_bake, read_pipeline
from .registries import read_registries
from .report import read_report
from .rules import SAFE_NAME, SAFE_NAME_RULE
from .state import read_state

__all__ = ["Config", "ConfigError", "display", "load_config", "register_secrets"]


def load_config(path: Path) -> Config:
    """Read and validate the whole configuration; raises ConfigError listing every problem."""
    try:
        path = path.resolve()
    except (OSError, RuntimeError) as exc:  # e.g. a symlink loop
        raise ConfigError([ConfigProblem(str(path), None, "", f"cannot read: {exc}")]) from None
    problems = Problems()
    if not os.path.lexists(path):
        raise ConfigError(
            [
                ConfigProblem(
                    display(path),
                    None,
                    "",
                    "file not found; `releaser init` writes a starting configuration, `-c FILE` names another",
                )
            ]
        )
    data = load_yaml(path, display(path))
    top = Fields(data, display(path), "", problems, 1)
    context = Context(path.parent, problems)

    project = top.str("project", required=True) or "app"
    state = read_state(top, path.parent)

    defaults = top.mapping("defaults") or Fields({}, top.file, "defaults", problems)
    shared = shared_environment_keys(defaults)
    env_defaults = {
        "parallel": defaults.int("parallel", 50, minimum=1),
        "handshakes": defaults.int("handshakes", 10, minimum=1),
        "command_timeout": defaults.duration("command_timeout", 600.0),
        "slow_after": defaults.duration("slow_after", 20.0),
    }
    stage_defaults = {
        "bake": read_bake(defaults, (None, 300.0)),
        "interval": defaults.duration("interval", 30.0),
        "rollback_window": defaults.duration("rollback_window", 3600.0),
    }
    defaults.finish()

    environments: dict[str, Environment] = {}
    env_section = top.mapping("environments", required=True)
    if env_section is not None:
        for name in list(env_section.data):
            if isinstance(env_section.data[name], dict):
                env_section.data[name] = with_defaults(env_section.data[name], shared)
            env_fields = env_section.mapping(str(name), required=True)
            if not SAFE_NAME.fullmatch(str(name)):
                env_section.problem(str(name), f"an environment name is {SAFE_NAME_RULE}, got {shown(str(name))}")
            elif env_fields is not None:
                environments[str(name)] = read_environment(context, str(name), env_fields, project, env_defaults)
    check_shared_roots(environments, env_section, problems)

    pipeline = read_pipeline(context, top, environments, stage_defaults)
    if not pipeline and top.has("pipeline") and isinstance(top.data["pipeline"], list):
        top.problem("pipeline", "a pipeline needs at least one stage")
    webhooks = read_webhooks(top)
    freezes = _read_freezes(top, set(environments))
    report = read_report(top, environments, pipeline, path.parent)
    registries = read_registries(top, path.parent)
    dashboard = read_dashboard(top, set(environments), mails=report.mail is not None)
    top.finish()
    if problems:
        raise ConfigError(list(problems))
    return Config(
        path=path,
        project=project,
        state_backend=state.backend,
        state_path=(path.parent / state.path).resolve(),
        state_wait=state.wait,
        state_url_env=state.url_env,
        freezes=freezes,
        environments=environments,
        pipeline=tuple(pipeline),
        playbooks=context.playbooks,
        webhooks=webhooks,
        report=report,
        local_files=tuple(context.local_files.values()),
        registries=registries,
        dashboard=dashboard,
    )


def unset_variables(config: Config) -> list[str]:
    """What would fail where releaser runs now, for a variable the configuration names that is not
    set here: `validate` warns of each (a laptop may rightly lack a CI runner's secrets)."""
    import os

    said = []
    for hook in config.webhooks + ((config.report.webhook,) if config.report.webhook else ()):
        if not hook.url and hook.url_env and not os.environ.get(hook.url_env):
            said.append(f"${hook.url_env} is not set here: a webhook reads its URL from it, and would fail")
    for env in config.environments.values():
        for name, variable in env.secrets.items():
            if not os.environ.get(variable):
                said.append(f"${variable} is not set here: {env.name}'s secret {name} reads it; a deploy would stop")
    if config.dashboard and not os.environ.get(config.dashboard.secret_env):
        said.append(
            f"${config.dashboard.secret_env} is not set here: `serve` would not start, and approval links from "
            "here would open the release's page, not its request"
        )
    return said


def register_secrets(config: Config) -> None:
    """Register every secret the configuration names (see secrets.py), so that whatever
    releaser writes is scrubbed of them from the first line on."""
    for env in config.environments.values():
        spec = env.metrics
        if spec is not None:
            secrets.register_url_password(spec.url)
            secrets.read_env(spec.bearer_env)
            if spec.username_env:
                secrets.read_credentials(spec.username_env, spec.password_env)
    mail = config.report.mail
    if mail is not None and mail.username_env:
        secrets.read_credentials(mail.username_env, mail.password_env)
    for env in config.environments.values():
        for variable in env.secrets.values():
            secrets.read_env(variable)
    for registry in config.registries.values():
        if registry.username_env:
            secrets.read_credentials(registry.username_env, registry.password_env)
    for hook in (*config.webhooks, config.report.webhook):
        if hook is not None:
            secrets.read_env(hook.url_env, url=True)
            secrets.read_env(hook.secret_env)
            secrets.register_url_password(hook.url)
    if config.dashboard is not None:
        secrets.read_env(config.dashboard.secret_env)


def _read_freezes(top: Fields, environments: set[str]) -> tuple[Freeze, ...]:
    """`freeze:` (releaser/freezes.py reads it, loaded only when a configuration has one)."""
    if not top.has("freeze"):
        return ()
    from ..freezes import read_freezes

    return read_freezes(top, environments)
