"""Field services: programs nobody in this project wrote, run as "the app" by releaser's own
starter over real sshd hosts, the way a newcomer would set them up.

Debian's `prometheus` and `prometheus-alertmanager` are each released as a tarball of their
configuration file and their flags (one a line); the playbook's restart hook starts the binary
from `current/` on the host's address and port, with its data under the host's root. A
traffic thread sends each prod host quiet loopback traffic on a fixed schedule, and keeps every
answer so that what the report counted can be held against what was sent.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import requests

from releaser.demo.ports import free_ports
from releaser.processes import pid_alive
from releaser.store import SqliteStore
from tests.harness.loopback import Loopback, QuietHandler
from tests.harness.marks import needs
from tests.harness.sshd import SshFleet
from tests.harness.tarballs import tar_gz

HOSTS = {"dev": ["dev-1"], "test": ["test-1"], "prod": ["prod-1", "prod-2", "prod-3", "prod-4"]}  # the starter's
RATE = 3.0  # requests a second to each prod host: quiet traffic


# -- the services --


@dataclass(frozen=True)
class Service:
    """How one program is run as the app: its binary, configuration file, storage flag and
    health endpoint, the metrics the canary and the report read, and one request of traffic."""

    name: str
    binary: str
    config: str  # the configuration file's name in the release
    storage_flag: str  # the flag naming its data directory
    ready: str  # the path that answers 200 once it serves
    requests: str  # the metrics the canary and the report read: what it served,
    errors: str  # what of it failed,
    latency: str  # and a latency histogram (a name: the canary and the report take no selector for it)
    request: Callable[[requests.Session, str, str, int], int]  # (session, base URL, host, n) -> HTTP status

    def canary(self) -> str:
        """The metric lines of healthchecks/canary.yaml."""
        return (
            f"    requests: '{self.requests}'   # what it served\n"
            f"    errors: '{self.errors}'   # what of it failed\n"
            f"    latency: {self.latency}   # a histogram: its _bucket series\n"
        )

    def report_metrics(self) -> str:
        """report.metrics in environments.yaml."""
        return (
            f"  metrics:\n    requests: '{self.requests}'\n    errors: '{self.errors}'\n    latency: {self.latency}\n"
        )

    def playbook(self) -> str:
        """The starter's hooks with this service's commands: stop the old process and wait until
        it is gone (both share the data directory), start the binary in the background from
        current/ with the release's flags, wait until it answers, and say which release the
        running process was started from."""
        log = f'"$RELEASER_ROOT/shared/logs/{self.name}.log"'
        pidfile = f'"$RELEASER_ROOT/shared/{self.name}.pid"'
        return f"""\
  restart: |
    pidfile={pidfile}
    if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
      for _ in $(seq 1 300); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "the running {self.name} (pid $(cat "$pidfile")) did not stop within 30s" >&2
        exit 1
      fi
    fi
    mapfile -t flags < flags      # the release's flags, one a line
    # A hook must return: the server runs in the background, its input and output redirected.
    nohup {self.binary} --config.file={self.config} "${{flags[@]}}" \\
      --web.listen-address="$RELEASER_ADDRESS:$PORT" {self.storage_flag}="$RELEASER_ROOT/shared/data" \\
      </dev/null >>{log} 2>&1 &
    echo $! > "$pidfile"
  verify: |
    pid=$(cat {pidfile})
    for _ in $(seq 1 300); do
      curl -fsS -o /dev/null "http://$RELEASER_ADDRESS:$PORT{self.ready}" && exit 0
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "{self.name} exited; the end of its log:" >&2
        tail -n 2 {log} >&2
        exit 1
      fi
      sleep 0.1
    done
    echo "{self.name} did not answer on $RELEASER_ADDRESS:$PORT{self.ready} within 30s" >&2
    exit 1
  version: |
    # the release the running process was started from (its working directory), not what
    # current points to: releaser compares the two
    pid=$(cat {pidfile}) && kill -0 "$pid" && cat "/proc/$pid/cwd/REVISION"
"""


def _query(session: requests.Session, base: str, _host: str, _n: int) -> int:
    return session.get(f"{base}/api/v1/query", params={"query": "up"}, timeout=2).status_code


def _alert(session: requests.Session, base: str, host: str, n: int) -> int:
    """One new alert: with `group_by: ['...']` each is a group of its own, so one notification."""
    alert = {"labels": {"alertname": "FieldTraffic", "instance": host, "n": str(n)}}
    return session.post(f"{base}/api/v2/alerts", json=[alert], timeout=2).status_code


PROMETHEUS = Service(
    name="prometheus",
    binary="/usr/bin/prometheus",
    config="prometheus.yml",
    storage_flag="--storage.tsdb.path",
    ready="/-/ready",
    requests='prometheus_http_requests_total{handler="/api/v1/query"}',
    errors='prometheus_http_requests_total{handler="/api/v1/query", code=~"5.."}',
    latency="prometheus_http_request_duration_seconds",  # every handler's, /metrics and /-/ready too
    request=_query,
)

# Alertmanager counts no HTTP request by status code (its /api/v2 requests appear in no metric,
# and its request histogram has no code label), so the canary judges what it is for: the
# notifications it sends, their failures and their latency.
ALERTMANAGER = Service(
    name="alertmanager",
    binary="/usr/bin/prometheus-alertmanager",
    config="alertmanager.yml",
    storage_flag="--storage.path",
    ready="/-/ready",
    requests='alertmanager_notification_requests_total{integration="webhook"}',
    errors='alertmanager_notification_requests_failed_total{integration="webhook"}',
    latency="alertmanager_notification_latency_seconds",
    request=_alert,
)


# -- releases: a tarball of the configuration and the flags --

PROMETHEUS_YML = """\
global:
  scrape_interval: {interval}
  evaluation_interval: {interval}
{rules}scrape_configs: []
"""
RULES = """\
groups:
  - name: field
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
"""


def prometheus_release(version: str, kind: str = "good") -> dict[str, str]:
    """good; `errors`: starts and answers /-/ready, but every query times out (503); `broken`:
    a configuration prometheus refuses at start (a duration without its unit)."""
    flags = ["--query.timeout=2m", "--storage.tsdb.retention.time=1d", "--log.level=info"]
    files = {"prometheus.yml": PROMETHEUS_YML.format(interval="15s", rules="")}
    if version != "1.0.0":  # later releases add a recording rule
        files["prometheus.yml"] = PROMETHEUS_YML.format(interval="15s", rules="rule_files: [rules.yml]\n")
        files["rules.yml"] = RULES
    if kind == "errors":
        flags[0] = "--query.timeout=0s"  # meant "no timeout"; prometheus takes it literally
    elif kind == "broken":
        files["prometheus.yml"] = PROMETHEUS_YML.format(interval="15", rules="")
    return {**files, "flags": "\n".join(flags) + "\n"}


ALERTMANAGER_YML = """\
route:
  receiver: {route_to}
  group_by: ['...']          # every alert a group of its own
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 4h
receivers:
  - name: on-call
    webhook_configs:
      - url: {url}
        send_resolved: false
"""


def alertmanager_release(version: str, webhook: str, kind: str = "good") -> dict[str, str]:
    """good; `errors`: starts and takes alerts, but its webhook URL has a typo, so every
    notification fails (404); `broken`: its route names a receiver that does not exist."""
    # --cluster.listen-address= : no gossip (it would listen on 0.0.0.0:9094, one port for every host)
    flags = ["--cluster.listen-address=", "--data.retention=2h", "--log.level=info"]
    url, route_to = f"{webhook}/hook", "on-call"
    if kind == "errors":
        url = f"{webhook}/hooks"
    elif kind == "broken":
        route_to = "oncall"
    if version != "1.0.0":
        flags.append("--alerts.gc-interval=1m")
    return {"alertmanager.yml": ALERTMANAGER_YML.format(route_to=route_to, url=url), "flags": "\n".join(flags) + "\n"}


# What each service says when it refuses the `broken` release's configuration (in its log).
REFUSALS = {"prometheus": "not a valid duration string", "alertmanager": "undefined receiver"}


class Webhook(Loopback):
    """Alertmanager's receiver on loopback: 200 on /hook, 404 anywhere else; counts what came."""

    def __init__(self):
        self.received = self.refused = 0
        webhook = self

        class Handler(QuietHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                found = self.path == "/hook"
                webhook.received += found
                webhook.refused += not found
                self.send_response(200 if found else 404)
                self.end_headers()

        super().__init__(Handler)


# -- quiet traffic --


class Traffic:
    """`rate` requests a second to each target (host -> base URL), one thread per host on a
    fixed schedule; every answer is kept as (time, host, status), a failure to connect as None."""

    def __init__(
        self, targets: dict[str, str], request: Callable[[requests.Session, str, str, int], int], rate: float = RATE
    ):
        self.targets, self.request, self.rate = targets, request, rate
        self.answers: list[tuple[float, int | None]] = []  # when, and the status (None: no answer)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, args=(host, url), daemon=True) for host, url in targets.items()
        ]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _send(self, host: str, url: str) -> None:
        with requests.Session() as session:
            due, n = time.monotonic(), 0
            while not self._stop.is_set():
                n += 1
                try:
                    status: int | None = self.request(session, url, host, n)
                except requests.RequestException:
                    status = None
                self.answers.append((time.time(), status))
                # behind after a stall (a busy machine): go on from now, never a burst to catch up,
                # so that the traffic stays as quiet as the test says
                due = max(due + 1 / self.rate, time.monotonic())
                self._stop.wait(due - time.monotonic())

    def count(self, start: float = 0.0, end: float = float("inf")) -> int:
        """The requests answered 200 between `start` and `end`."""
        return sum(1 for ts, status in list(self.answers) if start <= ts <= end and status == 200)


# -- the project: releaser's starter, changed where a user must --


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace text the starter is known to hold (exactly `count` times): a starter that
    changed fails here, not later in a confusing way."""
    text = path.read_text()
    assert text.count(old) == count, f"{path.name}: expected {count} x {old!r} in:\n{text}"
    path.write_text(text.replace(old, new))


@dataclass
class FieldProject:
    """The starter of `releaser init` with a service as its app, on hosts of the sshd fleet."""

    dir: Path
    service: Service
    addresses: dict[str, str]  # host -> 127.0.0.x
    ports: dict[str, int]  # host -> the service's port there
    hosts_root: Path
    release_files: Callable[[str, str], dict[str, str]]  # (version, kind) -> the tarball's files
    webhook: Webhook | None = None  # alertmanager's receiver
    artifacts: Path = field(init=False)
    watch: subprocess.Popen | None = field(init=False, default=None)
    traffics: list[Traffic] = field(init=False, default_factory=list)

    def __post_init__(self):
        self.artifacts = self.dir.parent / "artifacts"
        self.artifacts.mkdir(exist_ok=True)

    def url(self, host: str) -> str:
        return f"http://{self.addresses[host]}:{self.ports[host]}"

    def cli(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "releaser.cli", "-C", str(self.dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "NO_COLOR": "1"},
            check=False,
        )

    def ok(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        proc = self.cli(*args, timeout=timeout)
        assert proc.returncode == 0, (
            f"releaser {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
        return proc

    def register(self, version: str, kind: str = "good") -> None:
        """Build the release's tarball (see prometheus_release, alertmanager_release) and register it."""
        artifact = self.artifacts / f"{self.service.name}-{version}.tar.gz"
        artifact.write_bytes(tar_gz(self.release_files(version, kind)))
        self.ok("release", "create", version, "--artifact", str(artifact))

    def traffic(self) -> Traffic:
        """Quiet traffic to every prod host, stopped by `close` at the latest."""
        traffic = Traffic(
            {host: self.url(host) for host in self.addresses if host.startswith("prod-")}, self.service.request
        )
        self.traffics.append(traffic)
        return traffic

    def events(self, version: str | None = None) -> list[dict]:
        return json.loads(self.ok("history", "--json", *(["--release", version] if version else [])).stdout)["events"]

    def store_versions(self, env: str) -> dict[str, str | None]:
        """What the store says each host of `env` runs."""
        hosts = json.loads(self.ok("status", "--json").stdout)["environments"][env]["hosts"]
        return {name: state["version"] for name, state in hosts.items()}

    def running(self, host: str) -> str | None:
        """The release of the service process running on `host` (its working directory's
        REVISION), None when none runs."""
        pid = self.pid(host)
        if pid is None:
            return None
        try:
            return (Path(f"/proc/{pid}/cwd") / "REVISION").read_text().strip()
        except OSError:
            return None

    def pid(self, host: str) -> int | None:
        pidfile = self.hosts_root / host / "shared" / f"{self.service.name}.pid"
        try:
            pid = int(pidfile.read_text())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def samples_until(self, environment: str = "prod") -> float:
        """The time of the last metric sample releaser recorded (0: none)."""
        store = SqliteStore(self.dir / ".releaser" / "state.db", create=False)
        try:
            return store.last_sample_ts(environment) or 0.0
        finally:
            store.close()

    @contextmanager
    def watching(self) -> Iterator[None]:
        """`releaser watch` running, as in production: the daemon that keeps the rollback windows
        armed and records the metrics (every 2s here) between releases and while they roll out;
        stopped at the end as a service manager stops it."""
        self.watch = subprocess.Popen(
            [sys.executable, "-m", "releaser.cli", "-C", str(self.dir), "watch", "--interval", "2s"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        yield
        self.watch.send_signal(signal.SIGTERM)
        _out, err = self.watch.communicate(timeout=60)
        assert self.watch.returncode == 0, err  # a daemon stopped by a signal, with no alarm open

    def wait_for_sample(self, at: float, timeout: float = 120) -> None:
        """Until the watch daemon has recorded prod's metrics at or after `at` (epoch seconds)."""
        assert self.watch is not None
        deadline = time.monotonic() + timeout
        while self.samples_until() < at:
            assert self.watch.poll() is None, f"watch exited {self.watch.returncode}: {self.watch.communicate()}"
            assert time.monotonic() < deadline, f"no sample recorded after {at} within {timeout}s"
            time.sleep(0.2)

    def close(self) -> None:
        """End everything the project started, whatever state a failed test left it in: the
        traffic threads, the watch daemon, the services on the hosts, the webhook receiver."""
        for traffic in self.traffics:
            traffic.stop()
        if self.watch is not None and self.watch.poll() is None:
            self.watch.kill()
            self.watch.communicate(timeout=30)
        self.stop_services()
        if self.webhook is not None:
            self.webhook.close()

    def stop_services(self) -> None:
        """End every service process this project started: each host's pidfile, then any process
        still holding a data directory under the hosts' root; wait until they are gone."""
        pids = {pid for host in self.addresses if (pid := self.pid(host)) is not None}
        marker = str(self.hosts_root) + "/"
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker.encode() in (entry / "cmdline").read_bytes():
                        pids.add(int(entry.name))
                except OSError:
                    continue
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)


def field_project(name: str, base: Path, fleet: SshFleet) -> FieldProject:
    """The starter with `name` (prometheus or alertmanager) as its app."""
    needs(name)
    if name == "prometheus":
        return starter(base, PROMETHEUS, fleet, prometheus_release)
    webhook = Webhook()
    return starter(
        base, ALERTMANAGER, fleet, lambda version, kind: alertmanager_release(version, webhook.url, kind), webhook
    )


def starter(
    base: Path,
    service: Service,
    fleet: SshFleet,
    release_files: Callable[[str, str], dict[str, str]],
    webhook: Webhook | None = None,
) -> FieldProject:
    """`releaser init` in base/deploy, then what a user must change: ssh hosts on the fleet's
    loopback addresses (one port each for the service), the playbook's hooks, the health path,
    the canary's metric names, the report's metrics, and bakes short enough for CI."""
    directory = base / "deploy"
    init = subprocess.run(
        [sys.executable, "-m", "releaser.cli", "init", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    names = [host for hosts in HOSTS.values() for host in hosts]
    addresses = dict(zip(names, fleet.addresses, strict=False))
    ports = dict(zip(names, free_ports(len(names)), strict=False))
    hosts_root = base / "hosts"

    config = directory / "environments.yaml"
    _edit(
        config,
        "defaults:\n  bake: 2m                     # how long each stage watches its checks\n  interval: 15s\n",
        "defaults:\n  bake: 5s                     # how long each stage watches its checks (2m as shipped: "
        "shortened for CI)\n  interval: 2s                 # 15s as shipped\n"
        f'  root: "{hosts_root}/{{host}}"\n  ssh: {fleet.ssh_options()}\n',
    )
    _edit(
        config,
        "    transport: local           # each host is a directory on this machine (hosts/<name>)\n",
        "    transport: ssh\n",
    )
    _edit(config, "    transport: local\n", "    transport: ssh\n", count=2)
    text = config.read_text()
    for name in names:
        text, found = re.subn(
            rf'\{{name: {re.escape(name)}, vars: \{{PORT: "\d+"\}}\}}',
            f'{{name: {name}, address: {addresses[name]}, vars: {{PORT: "{ports[name]}"}}}}',
            text,
        )
        assert found == 1, f"{name} is not in the starter's environments.yaml"
    config.write_text(text)
    _edit(config, "    bake: 10s\n", "    bake: 5s                   # 10s as shipped: shortened for CI\n")
    _edit(
        config,
        "    bake: {min: 2m, max: 15m}  # passes once every check decided, after 2m; undecided at 15m: fails safe\n",
        "    bake: {min: 20s, max: 15m} # min shortened for CI (2m as shipped), still adaptive: passes once\n"
        "                               # every check decided, after 20s; undecided at 15m: fails safe\n",
    )
    _edit(
        config,
        "  window: 3d\n",
        "  window: 20s                  # 3d as shipped: shortened for CI\n"
        "  step: 4s                     # (window / 72, at least 1m, by default)\n" + service.report_metrics(),
    )

    playbook = directory / "playbooks" / "app.yaml"
    _edit(
        playbook,
        "# Until your app is wired in, `restart` runs a placeholder app (releaser's demo app: /health,\n"
        "# /metrics, /api/...) on the host's port, so the pipeline runs as written. Replace it with your\n"
        "# service's restart (systemctl restart myapp).\n",
        f"# The app is {service.binary}, its configuration and flags in each release.\n",
    )
    text = playbook.read_text()
    start = text.index("  restart: |\n")
    playbook.write_text(text[:start] + service.playbook())
    _edit(playbook, "shared: [logs]\n", "shared: [logs, data]\n")

    _edit(
        directory / "healthchecks" / "basic.yaml",
        'url: "http://{address}:{PORT}/health"',
        f'url: "http://{{address}}:{{PORT}}{service.ready}"',
    )
    canary = directory / "healthchecks" / "canary.yaml"
    text = canary.read_text()
    start = text.index("    requests: ")
    canary.write_text(text[:start] + service.canary())
    return FieldProject(directory, service, addresses, ports, hosts_root, release_files, webhook)
