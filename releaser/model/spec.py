"""What the configuration describes: hosts and how to reach them, environments, playbooks, stages
and their checks, the metrics, router, alert, notification and report specs, and the Config that
holds them all."""

from __future__ import annotations

import math
import re
from dataclasses import field
from pathlib import Path
from typing import Protocol

from ..record import Record

# one scrape: (metric name, sorted label pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(.*)\})?\s*$")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


class Selector(Record, frozen=True):
    """`name{label="v", other=~"re"}`: which samples of a scrape to add up; `{label="v"}` (no
    name) matches label sets alone, as an alert's. Plain data the configuration holds; metrics/
    reads it from YAML (`read_selector`) and sources apply it."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]

    @classmethod
    def parse(cls, text: str) -> Selector:
        match = _SELECTOR.match(text or "")
        if not match or not (match.group(1) or match.group(2)):
            shown = repr(text) if len(repr(text)) <= 60 else repr(text)[:59] + "…"  # as schema.shown
            raise ValueError(f'expected a metric selector like name{{label="value"}}, got {shown}')
        body, matchers, pos = match.group(2) or "", [], 0
        while pos < len(body.rstrip()):
            item = _MATCHER.match(body, pos)
            if not item:
                raise ValueError(f"cannot read the label matchers in {text!r}")
            label, op, value = item.group(1), item.group(2), item.group(3).encode().decode("unicode_escape")
            if op in ("=~", "!~"):
                re.compile(value)
            matchers.append((label, op, value))
            pos = item.end()
        return cls(match.group(1) or "", tuple(matchers))

    def matches(self, name: str, labels: tuple[tuple[str, str], ...]) -> bool:
        return name == self.name and self.matches_labels(dict(labels))

    def matches_labels(self, values: dict[str, str]) -> bool:
        """Whether a label set passes every matcher (a missing label reads as "", as in PromQL)."""
        for label, op, wanted in self.matchers:
            value = values.get(label, "")
            ok = {
                "=": value == wanted,
                "!=": value != wanted,
                "=~": re.fullmatch(wanted, value) is not None,
                "!~": re.fullmatch(wanted, value) is None,
            }[op]
            if not ok:
                return False
        return True

    def promql(self, instances: str) -> str:
        """This selector in PromQL, restricted to the instances matching the regex."""
        matchers = [*self._matchers(), 'instance=~"' + instances + '"']
        return f"{self.name}{{{', '.join(matchers)}}}"

    def text(self) -> str:
        """As the configuration writes it: `name{label="v"}`."""
        matchers = self._matchers()
        return self.name + (f"{{{', '.join(matchers)}}}" if matchers or not self.name else "")

    def _matchers(self) -> list[str]:
        return [f'{label}{op}"{promql_string(value)}"' for label, op, value in self.matchers]

    def total(self, samples: Samples) -> float:
        return math.fsum(v for (name, labels), v in samples.items() if self.matches(name, labels))


def promql_string(value: str) -> str:
    """A value inside a PromQL double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


class StageCheck(Protocol):
    """A stage's health check as the configuration holds it: health.base.Check, the one
    implementation, is built from the check sets (a protocol, so this module imports nothing)."""

    name: str
    failure_threshold: int


class SshOptions(Record, frozen=True):
    """How to reach a host over SSH; environment values, overridden per host."""

    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    host_key_policy: str = "verify"  # verify | accept-new
    jump: str | None = None  # [user@]host[:port] of a bastion
    config_file: str | None = None  # an ssh_config(5) file; default ~/.ssh/config
    connect_timeout: float = 10.0
    auth_timeout: float = 15.0
    keepalive: float = 15.0


class Host(Record, frozen=True):
    """A machine of an environment; `root` holds its releases, `vars` fill its templates."""

    name: str
    address: str
    root: str
    vars: dict[str, str] = field(default_factory=dict)
    ssh: SshOptions = field(default_factory=SshOptions)

    def template_values(self) -> dict[str, str]:
        """Values a check URL or command may name: {name}, {address}, {root} and every var."""
        return {**self.vars, "name": self.name, "address": self.address, "root": self.root}


class MetricsSpec(Record, frozen=True):
    """Where an environment's metrics come from."""

    source: str = "scrape"  # scrape: each host's /metrics | prometheus: a server's HTTP API
    url: str = ""  # prometheus: base URL
    instance: str = "{address}"  # prometheus: a host's `instance` label, as a template
    scrape_url: str = "http://{address}/metrics"  # scrape: a host's metrics URL, as a template
    timeout: float = 5.0
    bearer_env: str | None = None  # names of environment variables holding credentials
    username_env: str | None = None
    password_env: str | None = None


class RouterSpec(Record, frozen=True):
    """The load balancer(s) in front of an environment, and how releaser drives them."""

    type: str  # a kind of router.ROUTERS: nginx
    hosts: tuple[Host, ...]  # where it runs, reached by the environment's transport; empty: this machine
    file: str  # the file releaser owns there (an include)
    backend: str = "{address}:80"  # an app host as the router reaches it, a template
    key: tuple[str, str] = ("address", "")  # how users are told apart: (cookie | header | address, name)
    without_key: str = "stable"  # requests without the key: stable | address (split by client address)
    test: str = "nginx -t"
    reload: str = "nginx -s reload"
    pid_file: str = "/run/nginx.pid"
    drain_timeout: float = 30.0  # how long a drained host's requests may take to finish


class AlertRule(Record, frozen=True):
    """Which firing alerts (Alertmanager's webhook, to `watch --listen`) concern an environment."""

    match: Selector  # label matchers only: {service="shop", env="prod"}
    rollback: bool = True  # roll back what is in progress or in its window; False: journal the alert only


CONTROLLER = "controller"  # `migrate_on: controller`: the machine releaser runs on


class DrillSpec(Record, frozen=True):
    """`drills:` of an environment: how often its rollback (and restore) is rehearsed, and on
    which hosts (a cohort of prod, off-peak; None: every host)."""

    every: float = 180 * 86400.0
    hosts: tuple[str, ...] | None = None


class Environment(Record, frozen=True):
    """A named set of hosts, how releaser reaches them and how their releases are switched."""

    name: str
    transport: str
    playbook: str
    hosts: tuple[Host, ...]
    parallel: int = 50
    handshakes: int = 10  # ssh: connections being set up at once (sshd's MaxStartups is 10 by default)
    command_timeout: float = 600.0
    artifacts: str = "push"  # push: upload by SFTP; pull: hosts fetch the release's URL
    metrics: MetricsSpec | None = None
    report_to: tuple[str, ...] = ()  # who receives the effect reports of releases here
    pass_env: tuple[str, ...] = ()  # local transport: names of releaser's environment hooks also get
    slow_after: float = 20.0  # a phase running this long on a host is looked into, and again at each doubling
    router: RouterSpec | None = None
    alerts: AlertRule | None = None
    runtime: str = "podman"  # image releases: podman | docker (the same CLI)
    secrets: dict[str, str] = field(default_factory=dict)  # the app's variable -> the controller's holding it
    migrate_on: str | None = None  # the host that runs the migration tool ("controller": here); None: the first
    vars: dict[str, str] = field(default_factory=dict)  # the environment's own vars (each host's merges them)
    backups: str = "required"  # required: no migration without a backup | optional: a failed one is journaled
    drills: DrillSpec | None = None

    @property
    def migrates_on_controller(self) -> bool:
        """`migrate_on: controller`: the tool runs where releaser runs (unless a host is named so)."""
        return self.migrate_on == CONTROLLER and not any(h.name == CONTROLLER for h in self.hosts)

    @property
    def migration_host(self) -> Host:
        """The host that runs the migration tool (`migrates_on_controller`: see database.Database)."""
        return self.host(self.migrate_on) if self.migrate_on and not self.migrates_on_controller else self.hosts[0]

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)


class ContainerSpec(Record, frozen=True):
    """How an image release runs on a host: the container releaser starts for each release
    (named `<name>-<release>`), in place of `restart` and `version` hooks. Values may name
    {address}, {name}, {root} and the host's vars."""

    name: str  # the app's name: its containers carry the label releaser.app=<name>
    network: str = "host"  # host, or a network the runtime knows
    ports: tuple[str, ...] = ()  # publish: "8080:80", "127.0.0.1:8080:80"
    env: dict[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()  # "/srv/shop/data:/data"
    command: tuple[str, ...] = ()  # arguments after the image; () for the image's own
    ready: str | None = None  # a URL that answers 2xx once the new container serves
    ready_timeout: float = 60.0
    stop_timeout: float = 20.0  # the old container's TERM, then KILL after this long
    restart: str = "unless-stopped"  # the runtime's restart policy: back after a reboot, unless releaser stopped it


class ServiceSpec(Record, frozen=True):
    """A tarball release's process that releaser runs in place of `restart` and `version`
    hooks: started detached in the release's directory, its output in `logs/<name>.log` under
    the host's root, stopped gracefully then forcibly. Values may name host vars."""

    name: str
    command: str  # a bash command line; `exec`'d, so its pid is the service's
    ready: str | None = None  # a URL that answers 2xx once the new process serves
    ready_timeout: float = 60.0
    stop_timeout: float = 20.0  # TERM to the process group, then KILL after this long

    @property
    def log(self) -> str:
        """Its log, relative to the host's root."""
        return f"logs/{self.name}.log"


class TemplateSpec(Record, frozen=True):
    """A file rendered for each host (jinja2, sandboxed) and written into the release before
    the switch: `templates: {config/app.ini: templates/app.ini.j2}`."""

    path: str  # inside the release
    source: str  # the template file, as the configuration names it (for messages)
    text: str


class MigrateSpec(Record, frozen=True):
    """How the app's own migration tool runs (playbook `migrate:`): each command runs on the
    environment's migration host, in the release's directory, with the host's vars and the app's
    secrets; `$RELEASER_SCHEMA_TARGET` names the version to reach, `$RELEASER_BACKUP` the file a
    backup writes or a restore reads."""

    current: str  # prints the version the database is at (the first word of its last line)
    up: str
    down: str | None = None  # without it, no migration can be undone by releaser
    backup: str | None = None  # writes the database to "$RELEASER_BACKUP" before every migration
    restore: str | None = None  # restore drills: "$RELEASER_BACKUP" into a scratch database
    verify: str | None = None  # restore drills: exits 0 when the scratch database is sound
    timeout: float = 1800.0


class Playbook(Record, frozen=True):
    """The hooks that install, switch and check a release on a host, and what they share."""

    name: str
    file: str
    hooks: dict[str, str]
    shared: tuple[str, ...] = ()
    keep_releases: int = 5
    sudo: tuple[str, ...] = ()  # hooks that run under `sudo -n`
    container: ContainerSpec | None = None  # image releases: the container that runs each release
    service: ServiceSpec | None = None  # tarball releases: the process releaser runs for each release
    templates: tuple[TemplateSpec, ...] = ()
    migrate: MigrateSpec | None = None  # the app's migration tool: schema steps of its releases


class Approval(Record, frozen=True):
    """Who must approve a stage before it runs."""

    approvers: tuple[str, ...] = ()  # () for anyone
    not_by_promoter: bool = False  # the one who asked for the stage may not approve it


class StageSpec(Record, frozen=True):
    """One stage of the pipeline: where it deploys, to how many, and the checks it bakes with."""

    name: str
    environment: str
    checks: tuple[StageCheck, ...] = ()
    bake: float = 300.0  # a fixed bake, or an adaptive bake's longest
    bake_min: float | None = None  # an adaptive bake (`bake: {min, max}`) passes once its checks do, after this
    interval: float = 30.0
    rollback_window: float = 3600.0
    cohort: float = 10.0
    waves: tuple[float, ...] = (100.0,)
    wave_bake: float = 0.0  # a fixed bake after each wave but the last (0: one look at the checks)
    max_failed_hosts: int = 0
    on_inconclusive: str = "fail"  # fail: roll back (fail safe) | hold: exit 5, hosts left as they are
    users: tuple[float, ...] = ()  # with a router: the shares of users the new release gets, each step baked
    allow: tuple[str, ...] = ()  # with a router: user keys that always get the new release
    approval: Approval | None = None  # the stage waits for an approval before it starts

    @property
    def adaptive(self) -> bool:
        return self.bake_min is not None


class Webhook(Record, frozen=True):
    """Where events are posted (a URL, or the environment variable holding it)."""

    url: str | None
    url_env: str | None
    format: str = "json"  # json | slack | dingtalk | wecom | feishu
    events: tuple[str, ...] = ()
    timeout: float = 5.0
    secret_env: str | None = None  # DingTalk and Feishu: the variable holding the robot's signing secret


class MailSpec(Record, frozen=True):
    """How effect reports are mailed. Credentials are names of environment variables."""

    host: str
    port: int
    sender: str
    security: str = "starttls"  # starttls | ssl | none
    username_env: str | None = None
    password_env: str | None = None
    ca_file: str | None = None  # trust this CA (PEM) instead of the system's
    timeout: float = 30.0


class TierRule(Record, frozen=True):
    """`report.service.tiers.P1`: the incidents of a tier. Every condition given must hold; an
    empty list (or no `longer_than`) does not narrow it."""

    tier: str  # P1 .. P4
    causes: tuple[str, ...] = ()  # the rollback's cause: stage, window, alert, abort, manual, signal, resume
    environments: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    longer_than: float | None = None  # seconds from when the fault could be seen to the rollback's end


class ServiceReportSpec(Record, frozen=True):
    """`report.service`: the monthly service report of an environment."""

    send: bool = False  # mail each month's report (watch, `report due --send`)
    day: int = 1  # the report of month M is due on this day of M+1, at midnight in report.timezone
    availability_target: float = 0.999
    tiers: tuple[TierRule, ...] = ()  # most severe first (P1, P2, ...): an incident takes the first it matches


class ReportSpec(Record, frozen=True):
    """The effect report: when it is written, what it measures, how it is delivered."""

    delay: float = 3 * 86400.0  # after the last stage passes
    window: float = 3 * 86400.0  # each of before and after
    step: float | None = None  # chart resolution; None: window / 72, at least 1 minute
    language: str = "en"  # en | zh-CN
    timezone: str | None = None  # an IANA name for the report's times; None: the machine's
    rollback_sla: float = 3600.0
    requests: Selector | None = None  # counters
    errors: Selector | None = None
    latency: str | None = None  # a histogram's name
    cpu: Selector | None = None  # CPU seconds, a counter
    features: dict[str, Selector] = field(default_factory=dict)  # feature name -> a usage counter
    mail: MailSpec | None = None
    webhook: Webhook | None = None
    service: ServiceReportSpec | None = None  # None: `report.service` not written (the defaults, nothing mailed)

    @property
    def resolution(self) -> float:
        return self.step or max(60.0, self.window / 72)

    @property
    def measures(self) -> bool:
        return bool(self.requests or self.errors or self.latency or self.cpu or self.features)

    def counters(self) -> list[tuple[str, Selector]]:
        """The counters a report reads, under the keys its timeline gives them."""
        named = [("requests", self.requests), ("errors", self.errors), ("cpu", self.cpu)]
        named += [(f"feature:{name}", selector) for name, selector in self.features.items()]
        return [(key, selector) for key, selector in named if selector is not None]


class RegistrySpec(Record, frozen=True):
    """How releaser reaches a container registry (`registries:`) to resolve a tag to its
    digest; hosts pull with the runtime's own trust settings."""

    address: str  # host[:port], as image references name it
    insecure: bool = False  # plain HTTP (a loopback lab); hosts' runtimes pull without TLS too
    ca_file: str | None = None  # trust this CA (PEM) instead of the system's
    username_env: str | None = None  # names of environment variables holding credentials
    password_env: str | None = None
    timeout: float = 30.0


class Freeze(Record, frozen=True):
    """A time when promotions are refused (rollbacks never are): once, from `start` to `end`
    (ISO local times), or every week (`start` and `end` as "Fri 18:00"), in `timezone`."""

    name: str
    start: str
    end: str
    weekly: bool
    timezone: str
    environments: tuple[str, ...] = ()  # () for every environment
    line: str = ""  # where it is written (file:line), for the message that names it


class LocalFile(Record, frozen=True):
    """A file on this machine the configuration names (an SSH key, known_hosts, ssh_config),
    with where it was written, so that a missing one is reported at its line."""

    path: str
    file: str
    line: int | None
    key: str


class DashboardUser(Record, frozen=True):
    """Someone who may sign in to the dashboard: every user reads; `approver` and `operator`
    name the environments where they decide on stages, and abort, roll back and unlock."""

    name: str
    password: str | None = None  # the slow hash (`releaser serve --hash-password`); None: only through the proxy
    approver: tuple[str, ...] = ()
    operator: tuple[str, ...] = ()
    email: str | None = None  # approval links are mailed here (through report.mail)

    def may(self, role: str, environment: str) -> bool:
        named = self.approver if role == "approver" else self.operator
        return environment in named or "*" in named


class DashboardSpec(Record, frozen=True):
    """`releaser serve`: who signs in and how, how long a sign-in and an approval link last."""

    users: dict[str, DashboardUser] = field(default_factory=dict)
    url: str | None = None  # where people reach it: approval links in chat and mail start here
    secret_env: str = "RELEASER_DASHBOARD_SECRET"  # noqa: S105 - a variable's name. Signs forms and links
    session: float = 8 * 3600.0
    link_expires: float = 24 * 3600.0
    language: str | None = None  # en | zh-CN; None: the report's
    proxy_header: str | None = None  # single sign-on: the user name an authenticating proxy sets
    proxy_from: tuple[str, ...] = ()  # the proxy's addresses (networks): the header from elsewhere is refused
    proxy_secret_env: str | None = None  # the variable holding what the proxy sends in PROXY_SECRET_HEADER


class Config(Record, frozen=True):
    """A configuration file, checked and resolved: every environment, stage, playbook and check."""

    path: Path
    project: str
    state_backend: str
    state_path: Path
    environments: dict[str, Environment]
    pipeline: tuple[StageSpec, ...]
    playbooks: dict[str, Playbook]
    webhooks: tuple[Webhook, ...] = ()
    report: ReportSpec = field(default_factory=ReportSpec)
    state_wait: float = 10.0  # how long a write waits for another process holding the state's lock
    state_url_env: str = "RELEASER_DATABASE_URL"  # postgresql: the variable holding the state's URL
    freezes: tuple[Freeze, ...] = ()
    local_files: tuple[LocalFile, ...] = ()  # SSH files named, checked by `validate` and before a stage
    registries: dict[str, RegistrySpec] = field(default_factory=dict)  # by address
    dashboard: DashboardSpec | None = None

    def registry(self, address: str) -> RegistrySpec:
        """The registry's settings; one not configured is reached over TLS without credentials."""
        return self.registries.get(address) or RegistrySpec(address)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def stage(self, name: str) -> StageSpec:
        for spec in self.pipeline:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def stage_environment(self, name: str) -> str | None:
        """The environment a stage runs on (None: no such stage)."""
        return next((spec.environment for spec in self.pipeline if spec.name == name), None)

    def stage_names(self) -> list[str]:
        return [spec.name for spec in self.pipeline]

    @property
    def report_environment(self) -> Environment | None:
        """Where the last stage runs: the environment whose rollout a report describes."""
        return self.environments.get(self.pipeline[-1].environment) if self.pipeline else None

    @property
    def reports_dir(self) -> Path:
        return self.state_path.parent / "reports"
