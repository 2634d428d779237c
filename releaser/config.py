"""Load and validate environments.yaml, playbooks/*.yaml and healthchecks/*.yaml.

Validation collects every problem (file, line, key) before failing, and loading has no
side effects: nothing is written while or after reading configuration.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from . import secrets
from .errors import ConfigError, ConfigProblem
from .health import CHECK_TYPES, Check, check_class
from .metrics.selector import Selector, read_selector
from .model import (
    AlertRule,
    Approval,
    Config,
    Environment,
    Host,
    LocalFile,
    MailSpec,
    MetricsSpec,
    Playbook,
    ReportSpec,
    RouterSpec,
    SshOptions,
    StageSpec,
    Webhook,
)
from .names import DEFAULT_EVENTS, ROUTER_TYPES, STAGE_ORDER, TRANSPORTS
from .schema import (
    ENV_NAME,
    Fields,
    Problems,
    check_text,
    did_you_mean,
    fill_template,
    format_duration,
    known_zone,
    parse_percent,
    render_template,
    shown,
)
from .yamlsrc import Mapping, load_yaml

PLAYBOOK_DIR = "playbooks"
CHECKS_DIR = "healthchecks"
HOOKS = ("prepare", "restart", "verify", "version")
STATE_BACKENDS = ("sqlite", "postgresql")
DEFAULT_URL_ENV = "RELEASER_DATABASE_URL"
WEBHOOK_FORMATS = ("json", "slack", "dingtalk", "wecom", "feishu")
ARTIFACT_MODES = ("push", "pull")
METRIC_SOURCES = ("scrape", "prometheus")
HOST_KEY_POLICIES = ("verify", "accept-new")
REPORT_LANGUAGES = ("en", "zh-CN")
MAIL_SECURITY = ("starttls", "ssl", "none")
# Host and environment names reach shells, paths, journals and terminals: keep them plain.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
SAFE_NAME_RULE = "1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")
_HOST_ADDRESS = re.compile(r"[A-Za-z0-9._:-]{1,253}|\[[0-9A-Fa-f:.]+\]")
_SSH_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,31}")
# What reaches the router's configuration: plain names, and keys nginx reads as plain strings.
_COOKIE = re.compile(r"[A-Za-z0-9_]{1,64}")
_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")
_USER_KEY = re.compile(r"[A-Za-z0-9._@:+=/-]{1,128}")
_BACKEND = re.compile(r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}")
_JUMP = re.compile(r"(?:(?P<user>[^@\s]+)@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?")


def _is_address(text: str) -> bool:
    """An e-mail address, bare or as `Name <address>`."""
    from email.utils import parseaddr  # with socket and the email package: only for configurations that mail

    return bool(_ADDRESS.fullmatch(parseaddr(text)[1]))


def display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when below it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)


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
    loader = _Loader(path.parent, problems)

    project = top.str("project", required=True) or "app"
    state = top.mapping("state")
    backend, state_path, state_wait, url_env = "sqlite", ".releaser/state.db", 10.0, DEFAULT_URL_ENV
    if state is not None:
        backend = state.str("backend", "sqlite", choices=STATE_BACKENDS)
        if backend == "postgresql":
            url_env = state.env_name("url_env") or DEFAULT_URL_ENV
            for key in ("url", "path"):
                if state.has(key):
                    state.problem(
                        key,
                        "a PostgreSQL state is named by `url_env`, the variable holding its URL "
                        "(the password stays there)",
                    )
        else:
            state_path = state.str("path", state_path)
            if (path.parent / state_path).is_dir() or state_path.endswith("/"):
                state.problem("path", f"expected the path of a database file, got the directory {shown(state_path)}")
        state_wait = state.duration("wait", state_wait)
        state.finish()

    defaults = top.mapping("defaults") or Fields({}, top.file, "defaults", problems)
    shared = _shared_environment_keys(defaults)
    env_defaults = {
        "parallel": defaults.int("parallel", 50, minimum=1),
        "command_timeout": defaults.duration("command_timeout", 600.0),
        "slow_after": defaults.duration("slow_after", 20.0),
    }
    stage_defaults = {
        "bake": _read_bake(defaults, (None, 300.0)),
        "interval": defaults.duration("interval", 30.0),
        "rollback_window": defaults.duration("rollback_window", 3600.0),
    }
    defaults.finish()

    environments: dict[str, Environment] = {}
    env_section = top.mapping("environments", required=True)
    if env_section is not None:
        for name in list(env_section.data):
            if isinstance(env_section.data[name], dict):
                env_section.data[name] = _with_defaults(env_section.data[name], shared)
            env_fields = env_section.mapping(str(name), required=True)
            if not SAFE_NAME.fullmatch(str(name)):
                env_section.problem(str(name), f"an environment name is {SAFE_NAME_RULE}, got {shown(str(name))}")
            elif env_fields is not None:
                environments[str(name)] = loader.environment(str(name), env_fields, project, env_defaults)
    _check_shared_roots(environments, env_section, problems)

    pipeline = loader.pipeline(top, environments, stage_defaults)
    if not pipeline and top.has("pipeline") and isinstance(top.data["pipeline"], list):
        top.problem("pipeline", "a pipeline needs at least one stage")
    webhooks = _webhooks(top)
    freezes = _freezes(top, set(environments))
    report = _report(top, environments.get(pipeline[-1].environment) if pipeline else None, path.parent)
    top.finish()
    if problems:
        raise ConfigError(list(problems))
    return Config(
        path=path,
        project=project,
        state_backend=backend,
        state_path=(path.parent / state_path).resolve(),
        state_wait=state_wait,
        state_url_env=url_env,
        freezes=freezes,
        environments=environments,
        pipeline=tuple(pipeline),
        playbooks=loader.playbooks,
        webhooks=webhooks,
        report=report,
        local_files=tuple(loader.local_files.values()),
    )


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
    for hook in (*config.webhooks, config.report.webhook):
        if hook is not None:
            secrets.read_env(hook.url_env, url=True)
            secrets.read_env(hook.secret_env)
            secrets.register_url_password(hook.url)


def _alert_rule(parent: Fields) -> AlertRule | None:
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
    return AlertRule(match, rollback) if match is not None else None


def _approval(fields: Fields) -> Approval | None:
    """`approval: {required: true, approvers: [alice, bob], not_by_promoter: true}` on a stage."""
    section = fields.mapping("approval")
    if section is None:
        return None
    required = section.bool("required", True)
    approvers = []
    for name, line, key in section.items("approvers"):
        if not isinstance(name, str) or not name.strip() or not _plain(name) or len(name) > 100:
            section.problems.add(section.file, line, key, f"expected a user name, got {shown(str(name))}")
        else:
            approvers.append(name.strip())
    approval = Approval(tuple(approvers), section.bool("not_by_promoter", False))
    section.finish()
    return approval if required else None


def _freezes(top: Fields, environments: set[str]) -> tuple:
    if not top.has("freeze"):
        return ()
    from .freezes import read_freezes

    return read_freezes(top, environments)


# Keys of an environment that `defaults:` may set for every environment; `ssh` and `vars` merge
# key by key, the environment's own keys winning.
SHARED_ENVIRONMENT_KEYS = ("transport", "playbook", "root", "ssh", "vars", "pass_env", "artifacts")


def _shared_environment_keys(defaults: Fields) -> dict:
    """The environment keys `defaults:` sets, as written (each environment reads and checks them)."""
    shared = Mapping()
    shared.key_lines = {}
    for key in SHARED_ENVIRONMENT_KEYS:
        if defaults.has(key):
            shared[key] = defaults.raw(key)
            shared.key_lines[key] = defaults.line_of(key)
    return shared


def _with_defaults(own: dict, shared: dict) -> dict:
    """An environment's mapping with the shared keys it does not set; line numbers kept, so a
    problem in a shared value names the line in `defaults:`."""
    merged = Mapping()
    merged.line = getattr(own, "line", 0)
    merged.key_lines = {**getattr(shared, "key_lines", {}), **getattr(own, "key_lines", {})}
    merged.update(shared)
    for key, value in own.items():
        base = shared.get(key)
        if key in ("ssh", "vars") and isinstance(base, dict) and isinstance(value, dict):
            value = _with_defaults(value, base)
        merged[key] = value
    return merged


def _webhooks(top: Fields) -> tuple[Webhook, ...]:
    section = top.mapping("notifications")
    if section is None:
        return ()
    hooks = []
    for item, line, key in section.items("webhooks"):
        fields = Fields(item, section.file, key, section.problems, line)
        url, url_env = _webhook_url(fields)
        events = []
        for event, event_line, event_key in fields.items("events"):
            if event not in DEFAULT_EVENTS:
                section.problems.add(
                    fields.file,
                    event_line,
                    event_key,
                    f"expected one of {', '.join(DEFAULT_EVENTS)}, got {shown(event)}"
                    + did_you_mean(str(event), DEFAULT_EVENTS),
                )
            else:
                events.append(event)
        fmt, secret_env = _webhook_format(fields)
        hooks.append(
            Webhook(url, url_env, fmt, tuple(events) or DEFAULT_EVENTS, fields.duration("timeout", 5.0), secret_env)
        )
        fields.finish()
    section.finish()
    return tuple(hooks)


def _webhook_url(fields: Fields) -> tuple[str | None, str | None]:
    url, url_env = fields.str("url"), fields.env_name("url_env")
    if (url is None) == (url_env is None):
        fields.problem("url", "give exactly one of url and url_env (the name of a variable holding the URL)")
    elif url is not None and not url.startswith(("http://", "https://")):
        fields.problem("url", f"expected an http:// or https:// URL, got {shown(url)}")
    return url, url_env


def _webhook_format(fields: Fields) -> tuple[str, str | None]:
    """`format` (json, slack, or a chat robot: dingtalk, wecom, feishu) and the variable holding
    the robot's signing secret (`secret_env`, DingTalk and Feishu)."""
    fmt = fields.str("format", "json", choices=WEBHOOK_FORMATS) or "json"
    secret_env = fields.env_name("secret_env")
    if secret_env and fmt not in ("dingtalk", "feishu"):
        fields.problem(
            "secret_env",
            "only DingTalk and Feishu robots sign their requests"
            + (" (a WeCom robot is authorised by the key in its URL: give it with url_env)" if fmt == "wecom" else ""),
        )
    return fmt, secret_env


def _timezone(fields: Fields) -> str | None:
    """`report.timezone`: an IANA zone name that this machine's zone database knows."""
    name = fields.str("timezone")
    if name is None:
        return None
    if not known_zone(name):
        fields.problem("timezone", f"unknown time zone {shown(name)} (expected a name such as Asia/Shanghai or UTC)")
        return None
    return name


def _report(top: Fields, environment: Environment | None, base: Path) -> ReportSpec:
    """The `report:` section; every key has a default, so a pipeline always schedules reports."""
    fields = top.mapping("report")
    if fields is None:
        return ReportSpec()
    metrics = fields.mapping("metrics") or Fields({}, fields.file, fields.key_path("metrics"), fields.problems)
    features: dict[str, Selector] = {}
    feature_section = fields.mapping("features")
    if feature_section is not None:
        for name in list(feature_section.data):
            selector = read_selector(feature_section, str(name))
            if selector is not None:
                features[str(name)] = selector
        feature_section.finish()
    spec = ReportSpec(
        delay=fields.duration("delay", ReportSpec.delay),
        window=fields.duration("window", ReportSpec.window),
        step=fields.duration("step"),
        language=fields.str("language", "en", choices=REPORT_LANGUAGES) or "en",
        timezone=_timezone(fields),
        rollback_sla=fields.duration("rollback_sla", ReportSpec.rollback_sla),
        requests=read_selector(metrics, "requests"),
        errors=read_selector(metrics, "errors"),
        latency=metrics.str("latency"),
        cpu=read_selector(metrics, "cpu"),
        features=features,
        mail=_mail(fields, base),
        webhook=_report_webhook(fields),
    )
    if spec.latency is not None and not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", spec.latency):
        metrics.problem("latency", f"expected the name of a histogram, got {shown(spec.latency)}")
    if spec.window <= 0:
        fields.problem("window", "must be longer than 0s")
    if spec.step is not None and not 0 < spec.step <= spec.window:
        fields.problem("step", "must be longer than 0s and at most the window")
    measured = spec.requests or spec.errors or spec.latency or spec.cpu or spec.features
    if spec.errors and not spec.requests:
        metrics.problem("errors", "an error rate needs `requests` too")
    if environment is not None and measured and environment.metrics is None:
        fields.problem("metrics", f"environment {environment.name} (the last stage's) has no `metrics:` source")
    if environment is not None and spec.mail is not None and not environment.report_to:
        fields.problem("mail", f"environment {environment.name} (the last stage's) names no `report_to` recipients")
    metrics.finish()
    fields.finish()
    return spec


def _mail(parent: Fields, base: Path) -> MailSpec | None:
    fields = parent.mapping("mail")
    if fields is None:
        return None
    server = fields.str("smtp", required=True) or ""
    if server and not re.fullmatch(r"[A-Za-z0-9._-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?", server):
        fields.problem("smtp", f"expected host or host:port, got {shown(server)}")
        server = ""
    security = fields.str("security", "starttls", choices=MAIL_SECURITY) or "starttls"
    host, _, port_text = server.rpartition(":") if ":" in server else (server, "", "")
    port = {"ssl": 465, "starttls": 587, "none": 25}[security]
    if port_text:
        if port_text.isdigit() and 0 < int(port_text) < 65536:
            port = int(port_text)
        else:
            fields.problem("smtp", f"expected host or host:port, got {shown(server)}")
    sender = fields.str("from", required=True) or ""
    if sender and not _is_address(sender):
        fields.problem("from", f"expected an e-mail address, got {shown(sender)}")
    ca_file = fields.str("ca_file")
    spec = MailSpec(
        host=host or server,
        port=port,
        sender=sender,
        security=security,
        username_env=fields.env_name("username_env"),
        password_env=fields.env_name("password_env"),
        ca_file=str((base / os.path.expanduser(ca_file)).resolve()) if ca_file else None,
        timeout=fields.duration("timeout", 30.0),
    )
    if (spec.username_env is None) != (spec.password_env is None):
        fields.problem("username_env", "give both username_env and password_env, or neither")
    fields.finish()
    return spec


def _report_webhook(parent: Fields) -> Webhook | None:
    fields = parent.mapping("webhook")
    if fields is None:
        return None
    url, url_env = _webhook_url(fields)
    fmt, secret_env = _webhook_format(fields)
    hook = Webhook(url, url_env, fmt, ("report.sent",), fields.duration("timeout", 10.0), secret_env)
    fields.finish()
    return hook


class _Loader:
    """Reads the sections of one configuration, caching playbooks and check sets by name."""

    def __init__(self, base: Path, problems: Problems):
        self.base = base
        self.problems = problems
        self.playbooks: dict[str, Playbook] = {}
        self.check_sets: dict[str, list[Check] | None] = {}
        self.local_files: dict[str, LocalFile] = {}  # resolved path -> where it was first named

    # -- environments --

    def environment(self, name: str, fields: Fields, project: str, defaults: dict) -> Environment:
        transport = fields.str("transport", "local", choices=tuple(TRANSPORTS))
        playbook = fields.str("playbook", required=True)
        if playbook is not None and self.playbook(playbook, fields) is None:
            playbook = None
        default_root = "hosts/{host}" if transport == "local" else f"/srv/{project}"
        root_template = fields.str("root", default_root)
        if transport != "local" and root_template and not root_template.startswith("/"):
            fields.problem("root", f"a remote root must be an absolute path, got {shown(root_template)}")
            root_template = default_root
        env_vars = fields.scalar_map("vars")
        parallel = fields.int("parallel", defaults["parallel"], minimum=1)
        command_timeout = fields.duration("command_timeout", defaults["command_timeout"])
        slow_after = fields.duration("slow_after", defaults["slow_after"])
        if slow_after <= 0:
            fields.problem("slow_after", "must be longer than 0s")
        artifacts = fields.str("artifacts", "push", choices=ARTIFACT_MODES)
        metrics = self._metrics(fields)
        report_to = []
        for item, line, key in fields.items("report_to"):
            if not isinstance(item, str) or not _plain(item) or not _is_address(item):
                self.problems.add(fields.file, line, key, f"expected an e-mail address, got {shown(item)}")
            else:
                report_to.append(item)
        pass_env = []
        for item, line, key in fields.items("pass_env"):
            if not isinstance(item, str) or not ENV_NAME.fullmatch(item):
                self.problems.add(fields.file, line, key, f"expected an environment variable name, got {shown(item)}")
            else:
                pass_env.append(item)
        ssh = self._ssh(fields, SshOptions(), transport)
        hosts: list[Host] = []
        seen: dict[str, int | None] = {}
        for item, line, key in fields.items("hosts", required=True):
            host = self._host(item, line, key, fields, transport, root_template, env_vars, ssh)
            if host is None:
                continue
            if host.name in seen:
                self.problems.add(
                    fields.file, line, key, f"duplicate host {host.name!r} (first at line {seen[host.name]})"
                )
                continue
            seen[host.name] = line
            hosts.append(host)
        if not hosts and fields.has("hosts"):
            fields.problem("hosts", "an environment needs at least one host")
        if metrics is not None:
            _check_metric_templates(metrics, fields, hosts)
        router = self._router(fields, transport, ssh, hosts)
        alerts = _alert_rule(fields)
        fields.finish()
        return Environment(
            name,
            transport or "local",
            playbook or "",
            tuple(hosts),
            parallel,
            command_timeout,
            artifacts or "push",
            metrics,
            tuple(report_to),
            tuple(pass_env),
            slow_after,
            router,
            alerts,
        )

    def _router(self, parent: Fields, transport: str | None, ssh: SshOptions, hosts: list[Host]) -> RouterSpec | None:
        """`router:`: the load balancer in front of the environment (see releaser/router/)."""
        fields = parent.mapping("router")
        if fields is None:
            return None
        kind = fields.str("type", "nginx", choices=ROUTER_TYPES) or "nginx"
        router_hosts: list[Host] = []
        if not isinstance(fields.data.get("hosts"), list):
            fields.str("hosts", "local", choices=("local",))  # this machine
        else:
            for item, line, key in fields.items("hosts"):
                host = self._host(item, line, key, fields, transport, "/", {}, ssh)
                if host is not None:
                    router_hosts.append(host)
        paths = {}
        for key, default in (("file", None), ("pid_file", RouterSpec.pid_file)):
            path = fields.str(key, default, required=default is None)
            if path and not path.startswith("/"):
                if transport != "local" or router_hosts:
                    fields.problem(key, f"a path on the router must be absolute, got {shown(path)}")
                path = str((self.base / path).resolve())
            paths[key] = path or ""
        backend = fields.str("backend", RouterSpec.backend) or RouterSpec.backend
        for host in hosts:
            try:
                value = render_template(backend, host)
            except ValueError as exc:
                fields.problem("backend", str(exc))
                break
            if not _BACKEND.fullmatch(value):
                fields.problem("backend", f"expected host:port, got {shown(value)} (host {host.name})")
                break
        spec = RouterSpec(
            type=kind,
            hosts=tuple(router_hosts),
            file=paths["file"],
            backend=backend,
            key=self._user_key(fields),
            without_key=fields.str("without_key", "stable", choices=("stable", "address")) or "stable",
            test=fields.str("test", RouterSpec.test) or RouterSpec.test,
            reload=fields.str("reload", RouterSpec.reload) or RouterSpec.reload,
            pid_file=paths["pid_file"],
            drain_timeout=fields.duration("drain_timeout", RouterSpec.drain_timeout),
        )
        fields.finish()
        return spec

    def _user_key(self, router: Fields) -> tuple[str, str]:
        """`key: address`, `key: {cookie: NAME}` or `key: {header: NAME}`."""
        if router.data.get("key", "address") == "address":
            return ("address", "")
        fields = router.mapping("key")
        if fields is None:
            return ("address", "")
        cookie, header = fields.str("cookie"), fields.str("header")
        fields.finish()
        if (cookie is None) == (header is None):
            router.problem("key", "expected address, {cookie: NAME} or {header: NAME}")
        elif cookie is not None and not _COOKIE.fullmatch(cookie):
            fields.problem("cookie", f"a cookie name is letters, digits and '_', got {shown(cookie)}")
        elif header is not None and not _HEADER.fullmatch(header):
            fields.problem("header", f"a header name is letters, digits and '-', got {shown(header)}")
        else:
            return ("cookie", cookie) if cookie is not None else ("header", header or "")
        return ("address", "")

    def _metrics(self, parent: Fields) -> MetricsSpec | None:
        fields = parent.mapping("metrics")
        if fields is None:
            return None
        source = fields.str("source", "scrape", choices=METRIC_SOURCES)
        spec = MetricsSpec(
            source=source or "scrape",
            url=fields.str("url", "", required=source == "prometheus"),
            instance=fields.str("instance", MetricsSpec.instance),
            scrape_url=fields.str("scrape_url", MetricsSpec.scrape_url),
            timeout=fields.duration("timeout", 5.0),
            bearer_env=fields.env_name("bearer_env"),
            username_env=fields.env_name("username_env"),
            password_env=fields.env_name("password_env"),
        )
        if spec.url and not spec.url.startswith(("http://", "https://")):
            fields.problem("url", f"expected an http:// or https:// URL, got {shown(spec.url)}")
        fields.finish()
        return spec

    def _ssh(self, parent: Fields, base: SshOptions, transport: str | None) -> SshOptions:
        """An `ssh:` section over `base`; only meaningful for the ssh transport."""
        fields = parent.mapping("ssh")
        if fields is None:
            return base
        if transport != "ssh":
            parent.problem("ssh", "ssh options need `transport: ssh`")
        changes = {
            "user": fields.str("user"),
            "port": fields.int("port", minimum=1, maximum=65535),
            "identity_file": fields.str("identity_file"),
            "known_hosts": fields.str("known_hosts"),
            "host_key_policy": fields.str("host_key_policy", choices=HOST_KEY_POLICIES),
            "jump": fields.str("jump"),
            "config_file": fields.str("config_file"),
            "connect_timeout": fields.duration("connect_timeout"),
            "auth_timeout": fields.duration("auth_timeout"),
            "keepalive": fields.duration("keepalive"),
        }
        if changes["user"] is not None and not _SSH_USER.fullmatch(changes["user"]):
            fields.problem("user", f"expected a user name, got {shown(changes['user'])}")
        jump = _JUMP.fullmatch(changes["jump"] or "")
        if changes["jump"] is not None and (not jump or (jump["port"] and not 0 < int(jump["port"]) < 65536)):
            fields.problem("jump", f"expected [user@]host[:port], got {shown(changes['jump'])}")
        fields.finish()
        for key in ("identity_file", "known_hosts", "config_file"):
            if changes[key]:
                changes[key] = str((self.base / os.path.expanduser(changes[key])).resolve())
                self.local_files.setdefault(
                    changes[key], LocalFile(changes[key], fields.file, fields.line_of(key), fields.key_path(key))
                )
        return replace(base, **{k: v for k, v in changes.items() if v is not None})

    def _host(self, item, line, key, env: Fields, transport, root_template, env_vars, ssh) -> Host | None:
        if isinstance(item, str):
            item = {"name": item}
        fields = Fields(item, env.file, key, self.problems, line)
        name = fields.str("name", required=True)
        address = fields.str("address", "127.0.0.1" if transport == "local" else name)
        root = fields.str("root", root_template)
        host_vars = {**env_vars, **fields.scalar_map("vars")}
        ssh = self._ssh(fields, ssh, transport)
        fields.finish()
        if name is None:
            return None
        if not SAFE_NAME.fullmatch(name):
            fields.problem("name", f"a host name is {SAFE_NAME_RULE}, got {shown(name)}")
            return None
        if address is not None and not _HOST_ADDRESS.fullmatch(address):
            fields.problem("address", f"expected a host name or IP address, got {shown(address)}")
            return None
        try:
            root = fill_template(root or "", {"host": name})
        except ValueError:
            fields.problem("root", f"only {{host}} may be used in a root path, got {shown(root)}")
            return None
        if transport == "local":
            root = str((self.base / root).resolve())
        elif not root.startswith("/"):
            fields.problem("root", f"a remote root must be an absolute path, got {shown(root)}")
        return Host(name=name, address=address or name, root=root, vars=host_vars, ssh=ssh)

    # -- playbooks --

    def playbook(self, name: str, referrer: Fields) -> Playbook | None:
        if name in self.playbooks:
            return self.playbooks[name]
        if not _safe_name(name):
            referrer.problem("playbook", f"a playbook name is {SAFE_NAME_RULE}, got {shown(name)}")
            return None
        path = self.base / PLAYBOOK_DIR / f"{name}.yaml"
        if not path.is_file():
            referrer.problem("playbook", f"playbook file {display(path)} not found")
            return None
        try:
            data = load_yaml(path, display(path))
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None
        fields = Fields(data, display(path), "", self.problems, 1)
        fields.str("description", multiline=True)
        keep = fields.int("keep_releases", 5, minimum=2)
        shared = []
        for item, line, key in fields.items("shared"):
            if not isinstance(item, str) or not item or item.startswith("/") or ".." in item.split("/"):
                self.problems.add(
                    fields.file, line, key, f"expected a relative path inside the release, got {shown(item)}"
                )
            else:
                shared.append(item.rstrip("/"))
        sudo = []
        for item, line, key in fields.items("sudo"):
            if item not in HOOKS:
                self.problems.add(
                    fields.file, line, key, f"expected a hook name ({', '.join(HOOKS)}), got {shown(item)}"
                )
            else:
                sudo.append(item)
        hooks: dict[str, str] = {}
        hook_fields = fields.mapping("hooks")
        if hook_fields is not None:
            for hook in HOOKS:
                value = hook_fields.str(hook, multiline=True)
                if value:
                    hooks[hook] = value
            hook_fields.finish()
        fields.finish()
        self.playbooks[name] = Playbook(name, display(path), hooks, tuple(shared), keep, tuple(sudo))
        return self.playbooks[name]

    # -- check sets --

    def check_set(self, name: str, line: int | None, key: str, stage: Fields) -> list[Check]:
        if name in self.check_sets:
            return self.check_sets[name] or []
        if not _safe_name(name):
            self.problems.add(stage.file, line, key, f"a check set name is {SAFE_NAME_RULE}, got {shown(name)}")
            self.check_sets[name] = None
            return []
        path = self.base / CHECKS_DIR / f"{name}.yaml"
        if not path.is_file():
            known = [p.stem for p in path.parent.glob("*.yaml")] if path.parent.is_dir() else []
            self.problems.add(
                stage.file, line, key, f"check set file {display(path)} not found" + did_you_mean(name, known)
            )
            self.check_sets[name] = None
            return []
        try:
            data = load_yaml(path, display(path))
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            self.check_sets[name] = None
            return []
        fields = Fields(data, display(path), "", self.problems, 1)
        fields.str("description", multiline=True)
        checks: list[Check] = []
        names: dict[str, int | None] = {}
        for item, item_line, item_key in fields.items("checks", required=True):
            check_fields = Fields(item, fields.file, item_key, self.problems, item_line)
            check_name = check_fields.str("name", required=True)
            check_type = check_fields.str("type", required=True, choices=tuple(CHECK_TYPES))
            if check_name in names:
                check_fields.problem("name", f"duplicate check {check_name!r} (first at line {names[check_name]})")
            names[check_name] = check_fields.line_of("name")
            if check_name and check_type:
                check = check_class(check_type).from_fields(check_name, check_fields)
                check.origin = check_fields  # for template errors, reported per environment
                checks.append(check)
            check_fields.finish()
        fields.finish()
        self.check_sets[name] = checks
        return checks

    # -- pipeline --

    def pipeline(self, top: Fields, environments: dict[str, Environment], defaults: dict) -> list[StageSpec]:
        stages: list[StageSpec] = []
        last_index = -1
        for item, line, key in top.items("pipeline", required=True):
            fields = Fields(item, top.file, key, self.problems, line)
            name = fields.str("stage", required=True, choices=STAGE_ORDER)
            env_name = fields.str("environment", required=True)
            if env_name is not None and env_name not in environments:
                fields.problem(
                    "environment", f"unknown environment {env_name!r} (known: {', '.join(environments) or 'none'})"
                )
            if name in STAGE_ORDER:
                index = STAGE_ORDER.index(name)
                if index <= last_index:
                    fields.problem(
                        "stage",
                        f"stage {name!r} is out of order or repeated: stages run as {' -> '.join(STAGE_ORDER)}",
                    )
                last_index = max(last_index, index)
            checks: list[Check] = []
            for check_item, check_line, check_key in fields.items("checks"):
                if not isinstance(check_item, str):
                    self.problems.add(fields.file, check_line, check_key, "expected the name of a check set")
                    continue
                checks.extend(self.check_set(check_item, check_line, check_key, fields))
            environment = environments.get(env_name or "")
            if environment is not None:
                self._check_templates(checks, environment, name or "?")
            seen_checks: set[str] = set()
            for check in checks:
                if check.name in seen_checks:
                    fields.problem("checks", f"two checks named {check.name!r} in one stage")
                seen_checks.add(check.name)
            cohort = 10.0
            if fields.has("cohort") and name != "gray":
                fields.problem("cohort", "only the gray stage takes a cohort")
            cohort = fields.percent("cohort", cohort)
            waves = self._waves(fields)
            users, allow = self._users(fields, name, environment)
            bake = _read_bake(fields, defaults["bake"])
            spec = StageSpec(
                name=name or "?",
                environment=env_name or "?",
                checks=tuple(checks),
                bake_min=bake[0],
                bake=bake[1],
                interval=fields.duration("interval", defaults["interval"]),
                rollback_window=fields.duration("rollback_window", defaults["rollback_window"]),
                cohort=cohort,
                waves=waves,
                max_failed_hosts=fields.int("max_failed_hosts", 0, minimum=0),
                on_inconclusive=fields.str("on_inconclusive", "fail", choices=("fail", "hold")) or "fail",
                users=users,
                allow=allow,
                approval=_approval(fields),
            )
            if spec.interval <= 0:
                fields.problem("interval", "must be longer than 0s")
            fields.finish()
            stages.append(spec)
        by_name = {spec.name: spec for spec in stages}
        if "gray" in by_name and "full" in by_name and by_name["gray"].environment != by_name["full"].environment:
            top.problem("pipeline", "gray and full must run on the same environment (gray is a cohort of it)")
        return stages

    def _users(self, fields: Fields, stage: str | None, environment: Environment | None) -> tuple[tuple, tuple]:
        """`users: 10%`, `users: [1%, 10%]` or `users: {steps: [...], allow: [KEY, ...]}`:
        (steps, allowed keys) of a gray stage by users."""
        if not fields.has("users"):
            return (), ()
        if stage != "gray":
            fields.problem("users", "only the gray stage takes users")
            return (), ()
        if environment is not None and environment.router is None:
            fields.problem("users", f"a gray by users needs a router on {environment.name} (router: in environments)")
        raw = fields.data.get("users")
        section = fields.mapping("users") if isinstance(raw, dict) else None
        if section is not None:
            listed = section.items("steps", required=True)
        elif isinstance(raw, list):
            listed = fields.items("users")
        else:
            value = fields.percent("users")
            listed = [] if value is None else [(f"{value:g}%", fields.line_of("users"), fields.key_path("users"))]
        steps: list[float] = []
        for item, line, where in listed:
            try:
                value = parse_percent(item)
            except ValueError as exc:
                self.problems.add(fields.file, line, where, str(exc))
                continue
            if not 0 < value < 100:
                self.problems.add(
                    fields.file, line, where, f"a step is more than 0% and less than 100%, got {value:g}%"
                )
            elif steps and value <= steps[-1]:
                self.problems.add(fields.file, line, where, f"steps must grow: {value:g}% after {steps[-1]:g}%")
            else:
                steps.append(value)
        allow: list[str] = []
        if section is not None:
            for item, line, where in section.items("allow"):
                if not isinstance(item, (str, int)) or not _USER_KEY.fullmatch(str(item)):
                    self.problems.add(
                        fields.file,
                        line,
                        where,
                        f"a user key is 1 to 128 letters, digits or '._@:+=/-', got {shown(item)}",
                    )
                else:
                    allow.append(str(item))
            section.finish()
        return tuple(steps), tuple(allow)

    def _waves(self, fields: Fields) -> tuple[float, ...]:
        waves: list[float] = []
        for item, line, key in fields.items("waves"):
            try:
                value = parse_percent(item)
            except ValueError as exc:
                self.problems.add(fields.file, line, key, str(exc))
                continue
            if waves and value <= waves[-1]:
                self.problems.add(fields.file, line, key, f"waves must grow: {value:g}% after {waves[-1]:g}%")
            waves.append(value)
        if waves and waves[-1] != 100:
            fields.problem("waves", "the last wave must be 100%")
        return tuple(waves) or (100.0,)

    def _check_templates(self, checks: list[Check], environment: Environment, stage: str) -> None:
        for check in checks:
            for key, message in check.problems_for(environment, stage):
                check.origin.problem(key, f"{message} (environment {environment.name})")


def _check_shared_roots(environments: dict[str, Environment], section: Fields | None, problems: Problems) -> None:
    """Two local hosts in one directory would trample each other's releases."""
    owners: dict[str, str] = {}
    for env in environments.values():
        if env.transport != "local":
            continue
        for host in env.hosts:
            other = owners.setdefault(host.root, f"{env.name}/{host.name}")
            if other != f"{env.name}/{host.name}" and section is not None:
                section.problem(env.name, f"host {host.name} shares its root {host.root} with {other}")


def _check_metric_templates(spec: MetricsSpec, fields: Fields, hosts: list[Host]) -> None:
    """The per-host templates of a metrics source must fill in for every host."""
    section = fields.mapping("metrics")
    templates = {"instance": spec.instance} if spec.source == "prometheus" else {"scrape_url": spec.scrape_url}
    for key, template in templates.items():
        for host in hosts:
            try:
                value = render_template(template, host)
            except ValueError as exc:
                section.problem(key, str(exc))
                break
            if key == "scrape_url" and not value.startswith(("http://", "https://")):
                section.problem(key, f"expected an http:// or https:// URL, got {shown(value)} (host {host.name})")
                break


def _plain(text: str) -> bool:
    try:
        check_text(text)
    except ValueError:
        return False
    return True


def _safe_name(name: str) -> bool:
    """A playbook or check set name: a plain file name (SAFE_NAME), never a path."""
    return bool(SAFE_NAME.fullmatch(name))


def _read_bake(fields: Fields, default: tuple[float | None, float]) -> tuple[float | None, float]:
    """`bake: 30m` (fixed) or `bake: {min: 2m, max: 30m}` (adaptive) -> (min or None, max)."""
    if not isinstance(fields.data.get("bake"), dict):
        return None, fields.duration("bake", default[1])
    section = fields.mapping("bake")
    low, high = section.duration("min", 0.0), section.duration("max", None, required=True)
    section.finish()
    if high is None:
        return default
    if low > high:
        fields.problem("bake", f"min ({format_duration(low)}) is longer than max ({format_duration(high)})")
    return min(low, high), high
