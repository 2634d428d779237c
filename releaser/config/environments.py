"""The `environments:` section: each environment's hosts, transport, playbook and limits, and
the plugin sections it names (`metrics:`, `router:`), each read by its kind."""

from __future__ import annotations

from ..metrics import SOURCES
from ..metrics.selector import read_selector
from ..model import CONTROLLER, AlertRule, DrillSpec, Environment, Host, MetricsSpec, Playbook, RouterSpec, SshOptions
from ..router import ROUTERS
from ..schema import ENV_NAME, Fields, Problems, render_template, shown
from .context import Context
from .hosts import read_host, read_ssh
from .playbooks import read_playbook
from .rules import ARTIFACT_MODES, BACKUP_POLICIES, RUNTIMES, TRANSPORTS, is_address, plain


def read_environment(context: Context, name: str, fields: Fields, project: str, defaults: dict) -> Environment:
    problems = context.problems
    transport = fields.str("transport", "local", choices=TRANSPORTS)
    playbook = fields.str("playbook", required=True)
    if playbook is not None and read_playbook(context, playbook, fields) is None:
        playbook = None
    default_root = "hosts/{host}" if transport == "local" else f"/srv/{project}"
    root_template = fields.str("root", default_root)
    if transport != "local" and root_template and not root_template.startswith("/"):
        fields.problem("root", f"a remote root must be an absolute path, got {shown(root_template)}")
        root_template = default_root
    env_vars = fields.scalar_map("vars")
    parallel = fields.int("parallel", defaults["parallel"], minimum=1)
    handshakes = fields.int("handshakes", defaults["handshakes"], minimum=1)
    command_timeout = fields.duration("command_timeout", defaults["command_timeout"])
    slow_after = fields.duration("slow_after", defaults["slow_after"])
    if slow_after <= 0:
        fields.problem("slow_after", "must be longer than 0s")
    artifacts = fields.str("artifacts", "push", choices=ARTIFACT_MODES)
    runtime = fields.str("runtime", "podman", choices=RUNTIMES)
    secrets = _read_secrets(fields)
    metrics = _read_metrics(fields)
    report_to = []
    for item, line, key in fields.items("report_to"):
        if not isinstance(item, str) or not plain(item) or not is_address(item):
            problems.add(fields.file, line, key, f"expected an e-mail address, got {shown(item)}")
        else:
            report_to.append(item)
    pass_env = []
    for item, line, key in fields.items("pass_env"):
        if not isinstance(item, str) or not ENV_NAME.fullmatch(item):
            problems.add(fields.file, line, key, f"expected an environment variable name, got {shown(item)}")
        else:
            pass_env.append(item)
    ssh = read_ssh(context, fields, SshOptions(), transport)
    hosts: list[Host] = []
    seen: dict[str, int | None] = {}
    for item, line, key in fields.items("hosts", required=True):
        host = read_host(context, item, line, key, fields, transport, root_template, env_vars, ssh)
        if host is None:
            continue
        if host.name in seen:
            problems.add(fields.file, line, key, f"duplicate host {host.name!r} (first at line {seen[host.name]})")
            continue
        seen[host.name] = line
        hosts.append(host)
    if not hosts and fields.has("hosts"):
        fields.problem("hosts", "an environment needs at least one host")
    if metrics is not None:
        _check_metric_templates(metrics, fields, hosts)
    if playbook:
        _check_run_templates(context.playbooks[playbook], fields, hosts)
    router = _read_router(context, fields, transport, ssh, hosts)
    alerts = _read_alert_rule(fields)
    migrate_on, backups = _read_database(fields, context.playbooks.get(playbook or ""), hosts)
    drills = _read_drills(fields, hosts)
    fields.finish()
    return Environment(
        name=name,
        transport=transport or "local",
        playbook=playbook or "",
        hosts=tuple(hosts),
        parallel=parallel,
        handshakes=handshakes,
        command_timeout=command_timeout,
        artifacts=artifacts or "push",
        metrics=metrics,
        report_to=tuple(report_to),
        pass_env=tuple(pass_env),
        slow_after=slow_after,
        router=router,
        alerts=alerts,
        runtime=runtime or "podman",
        secrets=secrets,
        migrate_on=migrate_on,
        vars=env_vars,
        backups=backups,
        drills=drills,
    )


def check_shared_roots(environments: dict[str, Environment], section: Fields | None, problems: Problems) -> None:
    """Two local hosts in one directory would trample each other's releases."""
    owners: dict[str, str] = {}
    for env in environments.values():
        if env.transport != "local":
            continue
        for host in env.hosts:
            other = owners.setdefault(host.root, f"{env.name}/{host.name}")
            if other != f"{env.name}/{host.name}" and section is not None:
                section.problem(env.name, f"host {host.name} shares its root {host.root} with {other}")


def _read_metrics(parent: Fields) -> MetricsSpec | None:
    """`metrics:`: the environment's metric source; the source's kind reads its keys."""
    fields = parent.mapping("metrics")
    if fields is None:
        return None
    source = fields.str("source", "scrape", choices=SOURCES.names())
    spec = SOURCES.get(source or "scrape").read_spec(source or "scrape", fields)
    fields.finish()
    return spec


def _check_metric_templates(spec: MetricsSpec, fields: Fields, hosts: list[Host]) -> None:
    """The per-host templates of a metrics source must fill in for every host."""
    section = fields.mapping("metrics")
    if section is None:
        return
    for key, message in SOURCES.get(spec.source).problems_for(spec, hosts):
        section.problem(key, message)


def _read_secrets(parent: Fields) -> dict[str, str]:
    """`secrets: {DB_PASSWORD: {env: PROD_DB_PASSWORD}}`: the app's variables and the variables
    of releaser's own environment that hold their values (read when a stage prepares)."""
    secrets = {}
    for name, source in parent.sections("secrets", ENV_NAME.fullmatch, "the name of an environment variable"):
        variable = source.env_name("env")
        if variable is None and not source.has("env"):
            source.problem("env", "required key is missing: the variable on this machine that holds the value")
        source.finish()
        if variable:
            secrets[name] = variable
    return secrets


def _check_run_templates(playbook: Playbook, fields: Fields, hosts: list[Host]) -> None:
    """A container's or service's values may name host vars: each must fill in for every host
    of the environment."""
    if playbook.templates:
        from ..templates import TemplateFailed, render

        for spec in playbook.templates:
            for host in hosts:
                try:
                    render(spec, host, "RELEASE", "ENVIRONMENT")
                except TemplateFailed as exc:  # at the template's own line, once per template
                    fields.problems.add(spec.source, exc.line, "", f"{exc.why} (its environment: {fields.path})")
                    break
    if playbook.container is not None:
        from ..containers import templates

        section, named = "container", templates(playbook.container)
    elif playbook.service is not None:
        from ..services import templates as service_templates

        section, named = "service", service_templates(playbook.service)
    else:
        return
    for host in hosts:
        for key, template in named:
            try:
                render_template(template, host)
            except ValueError as exc:
                fields.problem("playbook", f"{playbook.file}: {section}.{key}: {exc}")
                return


def _read_router(
    context: Context, parent: Fields, transport: str | None, ssh: SshOptions, hosts: list[Host]
) -> RouterSpec | None:
    """`router:`: the load balancer in front of the environment (see releaser/router/); where it
    runs is read here, the rest by its kind."""
    fields = parent.mapping("router")
    if fields is None:
        return None
    kind = fields.str("type", "nginx", choices=ROUTERS.names()) or "nginx"
    router_hosts: list[Host] = []
    if not isinstance(fields.data.get("hosts"), list):
        fields.str("hosts", "local", choices=("local",))  # this machine
    else:
        for item, line, key in fields.items("hosts"):
            host = read_host(context, item, line, key, fields, transport, "/", {}, ssh)
            if host is not None:
                router_hosts.append(host)
    remote = transport != "local" or bool(router_hosts)
    spec = ROUTERS.get(kind).read_spec(kind, fields, tuple(router_hosts), hosts, remote, context.base)
    fields.finish()
    return spec


def _read_database(fields: Fields, playbook: Playbook | None, hosts: list[Host]) -> tuple[str | None, str]:
    """`migrate_on: HOST` (the host that runs the playbook's migration tool, or `controller`: this
    machine; default the first host)
    and `backups: required | optional` (whether a migration may run without its backup)."""
    migrate_on = fields.str("migrate_on")
    names = [h.name for h in hosts]
    if migrate_on is not None and hosts and migrate_on not in (*names, CONTROLLER):
        fields.problem(
            "migrate_on",
            f"expected one of this environment's hosts ({', '.join(names[:8])}) or {CONTROLLER} (this machine), "
            f"got {shown(migrate_on)}",
        )
        migrate_on = None
    backups = fields.str("backups", "required", choices=BACKUP_POLICIES) or "required"
    migrate = playbook.migrate if playbook is not None else None
    if migrate is not None and migrate.backup is None and backups == "required":
        fields.problem(
            "playbook",
            f"{playbook.file if playbook else ''} migrates the database (`migrate:`) with no `backup:` command, and "
            "this environment requires one before every migration: add `migrate.backup` to the playbook, or set "
            "`backups: optional` here",
        )
    return migrate_on, backups


def _read_drills(parent: Fields, hosts: list[Host]) -> DrillSpec | None:
    """`drills: {every: 180d, hosts: [...]}`: how often the rollback is rehearsed here, and on
    which hosts (default: all)."""
    fields = parent.mapping("drills")
    if fields is None:
        return None
    every = fields.duration("every", DrillSpec.every)
    names = {h.name for h in hosts}
    cohort = []
    for item, line, key in fields.items("hosts"):
        if item not in names:
            fields.problems.add(fields.file, line, key, f"expected one of this environment's hosts, got {shown(item)}")
        else:
            cohort.append(item)
    fields.finish()
    return DrillSpec(every=every, hosts=tuple(cohort) if fields.has("hosts") else None)


def _read_alert_rule(parent: Fields) -> AlertRule | None:
    """`alerts: {match: '{service="shop", env="prod"}', rollback: true}`: the firing alerts that
    roll this environment back (received by `releaser watch --listen`)."""
    fields = parent.mapping("alerts")
    if fields is None:
        return None
    match = read_selector(fields, "match", required=True, named=False)
    rollback = fields.bool("rollback", True)
    if match is not None and not match.matchers:
        fields.problem("match", "give at least one label matcher: an empty one would match every alert")
        match = None
    fields.finish()
    return AlertRule(match=match, rollback=rollback) if match is not None else None
