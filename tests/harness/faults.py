"""The fault-injection lab: 12 hosts over real sshd (one sshd each, so that one host can be cut
off), each running an app that ships in the release and reports its version; releaser stopped
by SIGKILL or SIGTERM at journal steps (`RELEASER_FAILPOINT`), then `releaser resume`; and an
oracle that compares the store with what every host really runs.

Two variants change what a release is: `routed` puts prod behind nginx; `images` makes every
release an image in a registry the lab starts, run as a container by each host's own podman
(the test app of tests/harness/containers.py, which also serves its version).

Used by tests/test_faults.py and bench/faults.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

from tests.harness.sshd import SshFleet

ENVIRONMENTS = {"dev": 1, "test": 2, "prod": 9}  # 12 hosts; gray is 1 prod host, full goes in two waves
STAGES = {"selftest": "dev", "test": "test", "gray": "prod", "full": "prod"}

# The app is part of the release: it serves the version it was started from, and is sick
# when its release carries SICK (a bad release) or the host has shared/SICK (it turns bad
# after it passed, for rollback windows).
APP = """import http.server, pathlib, sys
root, port, bind = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
version = (root / "current" / "REVISION").read_text().strip()
born_sick = (root / "current" / "SICK").exists()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        sick = born_sick or (root / "shared" / "SICK").exists()
        code, body = {"/version": (200, version), "/health": (500 if sick else 200, "sick" if sick else "ok")}.get(
            self.path, (404, "no"))
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body.encode())
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer((bind, port), Handler).serve_forever()
"""

PLAYBOOK = """\
keep_releases: 3
shared: [logs]
hooks:
  restart: |
    pidfile="$RELEASER_ROOT/shared/app.pid"
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 250); do  # until it is gone or a zombie (its port is free then)
        case "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" in "" | Z) break ;; esac
        sleep 0.02
      done
    fi
    # a barrier the tests hold to act while a switch is half done
    for _ in $(seq 1 1500); do [ -f "$RELEASER_ROOT/shared/HOLD" ] || break; sleep 0.02; done
    nohup python3 app.py "$RELEASER_ROOT" "$PORT" "$BIND" </dev/null >>"$RELEASER_ROOT/shared/logs/app.log" 2>&1 &
    echo $! > "$pidfile"
  verify: |
    for _ in $(seq 1 250); do
      [ "$(curl -fsS --max-time 1 "http://$BIND:$PORT/version" 2>/dev/null)" = "$RELEASER_RELEASE" ] && exit 0
      sleep 0.02
    done
    echo "the app does not serve $RELEASER_RELEASE" >&2
    exit 1
  version: |
    curl -fsS --max-time 2 "http://$BIND:$PORT/version"
"""

# An image release runs as a container on the host's network, bound to the host's own address;
# the host's shared/ is its /shared, where Lab.sicken's flag makes it sick.
CONTAINER_PLAYBOOK = """\
keep_releases: 3
container:
  name: app
  env: {ADDR: "{address}", PORT: "{PORT}", NAME: "{name}"}
  volumes: ["{root}/shared:/shared"]
  ready: "http://{address}:{PORT}/ready"
  ready_timeout: 20s
  stop_timeout: 2s
"""

CHECKS = """\
checks:
  - name: app
    type: http
    url: "http://{address}:{PORT}/health"
    expect_status: [200]
    timeout: 2s
"""


@dataclass
class Point:
    """A journal step to stop releaser at: the n-th `kind` event (of `stage`)."""

    kind: str
    stage: str | None
    nth: int

    def __str__(self) -> str:
        return f"{self.kind}{'@' + self.stage if self.stage else ''}#{self.nth}"


@dataclass
class Lab:
    base: Path
    fleet: SshFleet
    names: dict[str, list[str]] = field(default_factory=dict)
    port: int = 0
    versions: int = 0
    resume_in_process: bool = False
    layout: dict[str, int] = field(default_factory=lambda: dict(ENVIRONMENTS))
    nginx: object = None  # with `routed`: the nginx in front of prod (releaser.demo.nginx.SandboxNginx)
    registry: object = None  # with `images`: where releases are pushed (tests.harness.containers.Registry)
    podman: dict[str, dict[str, str]] = field(default_factory=dict)  # with `images`: each host's podman vars

    @classmethod
    def create(
        cls, base: Path, prod_hosts: int = ENVIRONMENTS["prod"], routed: bool = False, images: bool = False
    ) -> Lab:
        """A lab of real sshd hosts; `prod_hosts` (at least 3: gray takes one, full two waves);
        `routed`: prod behind a real nginx, its gray by users; `images`: image releases."""
        layout = {**ENVIRONMENTS, "prod": prod_hosts}
        fleet = SshFleet(base / "sshd", sum(layout.values()), per_sshd=1)
        lab = cls(base / "project", fleet, layout=layout)
        lab.port = fleet.port + 1  # the apps listen on the hosts' own addresses: one port fits all
        if images:
            from tests.harness.containers import Registry

            lab.registry = Registry(base / "registry")
        if routed:
            from releaser.router.nginx import variable
            from tests.harness.nginx import nginx_in

            lab.nginx = nginx_in(base / "nginx", variable("prod"))
        lab.write()
        if routed:
            from releaser.config import load_config
            from releaser.router.nginx import NginxRouter
            from releaser.router.route import Route

            prod = load_config(lab.base / "environments.yaml").environments["prod"]
            lab.nginx.start(NginxRouter(prod.router, prod).render(Route()))
        return lab

    def close(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        if self.registry is not None:
            from tests.harness.containers import stop_all

            for host_vars in self.podman.values():
                stop_all(host_vars)
            self.registry.close()
        for root in (self.base / "hosts").glob("*"):
            pidfile = root / "shared" / "app.pid"
            if pidfile.exists():
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pidfile.read_text()), signal.SIGTERM)
        self.fleet.close()

    # -- the project --

    def write(self) -> None:
        (self.base / "playbooks").mkdir(parents=True, exist_ok=True)
        (self.base / "healthchecks").mkdir(exist_ok=True)
        (self.base / "playbooks" / "app.yaml").write_text(CONTAINER_PLAYBOOK if self.registry else PLAYBOOK)
        (self.base / "healthchecks" / "app.yaml").write_text(CHECKS)
        addresses = iter(self.fleet.addresses)
        envs, number = [], 0
        for env, count in self.layout.items():
            hosts = []
            for _ in range(count):
                number += 1
                name, address = f"h{number:02d}", next(addresses)
                self.names.setdefault(env, []).append(name)
                host_vars = {"BIND": address}
                if self.registry is not None:
                    from tests.harness.containers import podman_conf

                    host_vars = self.podman[name] = podman_conf(self.base.parent / "podman" / name)
                hosts.append(f"{{name: {name}, address: {address}, vars: {json.dumps(host_vars)}}}")
            envs.append(
                f'  {env}:\n    transport: ssh\n    root: "{self.base}/hosts/{{host}}"\n    playbook: app\n'
                f'    command_timeout: {"30s" if self.registry else "8s"}\n    vars: {{PORT: "{self.port}"}}\n'
                f"    ssh: {self.fleet.ssh_options(connect_timeout='2s', auth_timeout='3s')}\n"
                f"    hosts: [{', '.join(hosts)}]"
                + (
                    "\n" + self.nginx.router_section(backend="{address}:{PORT}").rstrip("\n")
                    if env == "prod" and self.nginx is not None
                    else ""
                )
            )
        stages = "".join(
            f"  - stage: {stage}\n    environment: {env}\n    checks: [app]\n    bake: 200ms\n    interval: 100ms\n"
            + ("    waves: [50%, 100%]\n" if stage == "full" else "")
            + ("    users: [10%]\n" if stage == "gray" and self.nginx is not None else "")
            for stage, env in STAGES.items()
        )
        registries = f"registries:\n  {self.registry.address}: {{insecure: true}}\n" if self.registry else ""
        (self.base / "environments.yaml").write_text(
            "project: faults\nstate: {wait: 3s}\n"
            + registries
            + "environments:\n"
            + "\n".join(envs)
            + "\npipeline:\n"
            + stages
        )

    def artifact(self, version: str, sick: bool = False) -> Path:
        files = {"app.py": APP, **({"SICK": "1\n"} if sick else {})}
        path = self.base / "artifacts" / f"app-{version}.tar.gz"
        path.parent.mkdir(exist_ok=True)
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for name, text in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(text.encode())
                tar.addfile(info, io.BytesIO(text.encode()))
        path.write_bytes(raw.getvalue())
        return path

    def new_release(self, sick: bool = False) -> str:
        self.versions += 1
        version = f"1.{self.versions}.0"
        if self.registry is None:
            self.run("release", "create", version, "--artifact", str(self.artifact(version, sick)))
        else:  # sick on hosts whose name starts with "h": every host of the lab
            image = self.registry.push("app", version, version, sick_on="h" if sick else "")
            self.run("release", "create", version, "--image", image)
        return version

    # -- driving releaser --

    def run(self, *args: str) -> str:
        """A command that is not to be stopped, in this process (click's runner); its stdout."""
        result = self._invoke(*args, catch_exceptions=False)
        if result.exit_code != 0:
            raise AssertionError(f"releaser {' '.join(args)} exited {result.exit_code}:\n{result.stderr}")
        return result.stdout

    def _invoke(self, *args: str, catch_exceptions: bool):
        from click.testing import CliRunner

        from releaser.cli import cli

        return CliRunner(env={"NO_COLOR": "1", "RELEASER_FAILPOINT": None}).invoke(
            cli, ["-C", str(self.base), *args], catch_exceptions=catch_exceptions
        )

    def cli(
        self, *args: str, failpoint: str | None = None, check: bool = False, timeout: float = 180
    ) -> subprocess.CompletedProcess:
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("RELEASER_FAILPOINT", None)
        if failpoint:
            env["RELEASER_FAILPOINT"] = failpoint
        proc = subprocess.run(
            [sys.executable, "-m", "releaser.cli", "-C", str(self.base), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"releaser {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def resume(self) -> tuple[int, str]:
        """`releaser resume`: its exit code and stderr. In its own process (what a user times),
        or with `resume_in_process` in this one (the suite: a process start less per stop)."""
        if not self.resume_in_process:
            proc = self.cli("resume")
            return proc.returncode, proc.stderr
        result = self._invoke("resume", catch_exceptions=True)
        trace = ""
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            trace = "Traceback\n" + "".join(traceback.format_exception(result.exception))
        return result.exit_code, result.stderr + trace

    def spawn(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "releaser.cli", "-C", str(self.base), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )

    def events(self) -> list[dict]:
        return json.loads(self.run("history", "--json"))["events"]

    def status(self) -> dict:
        return json.loads(self.run("status", "--json"))

    # -- the hosts, asked directly --

    def root(self, host: str) -> Path:
        return self.base / "hosts" / host

    def steps(self, host: str) -> list[dict]:
        """The host's own record."""
        record = self.root(host) / ".releaser" / "record.jsonl"
        return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []

    def running(self, host: str) -> list[str]:
        """With `images`: the releases of the host's running containers, asked of its podman."""
        from tests.harness.containers import podman

        listed = podman(self.podman[host], "ps", "--format", '{{index .Labels "releaser.release"}}').stdout
        return sorted(listed.split())

    def current(self, host: str) -> str | None:
        link = self.root(host) / "current"
        return os.readlink(link).removeprefix("releases/") if link.is_symlink() else None

    def served(self, host: str) -> str | None:
        address = self.fleet.addresses[self.all_hosts().index(host)]
        try:
            with urllib.request.urlopen(f"http://{address}:{self.port}/version", timeout=3) as answer:
                return answer.read().decode().strip()
        except OSError:
            return None

    def all_hosts(self) -> list[str]:
        return [h for hosts in self.names.values() for h in hosts]

    def sicken(self, env: str, sick: bool = True) -> None:
        """Make every app of `env` answer /health with 500 (the release went bad after it passed)."""
        for host in self.names[env]:
            flag = self.root(host) / "shared" / "SICK"
            flag.parent.mkdir(parents=True, exist_ok=True)
            if sick:
                flag.write_text("1\n")
            else:
                flag.unlink(missing_ok=True)

    @contextmanager
    def partition(self, host: str):
        """Cut `host` off: its sshd and every session it serves stop answering (SIGSTOP)."""
        server = self.fleet.server_of(self.fleet.addresses[self.all_hosts().index(host)])
        pids = [server.process.pid, *_descendants(server.process.pid, only="sshd")]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    # -- the oracle --

    def problems(self) -> list[str]:
        """Everything that differs between the store and the hosts, or is left unfinished."""
        found = []
        status = self.status()
        for env, hosts in self.names.items():
            state = status["environments"][env]
            actual = {h: self.current(h) for h in hosts}
            served = {h: self.served(h) for h in hosts}
            if len(set(actual.values())) != 1 and not _gray_split(actual, status["releases"]):
                found.append(f"{env} runs mixed versions: {actual}")
            for host in hosts:
                stored = state["hosts"][host]
                if served[host] != actual[host]:
                    found.append(f"{host}: current {actual[host]} but the app serves {served[host]}")
                running = self.running(host) if self.registry is not None else [actual[host]]
                if running != [actual[host]]:
                    found.append(f"{host}: current {actual[host]} but podman runs the containers of {running}")
                if stored["version"] != actual[host]:
                    found.append(f"{host}: the store says {stored['version']}, the host runs {actual[host]}")
                if stored["doubt"]:
                    found.append(f"{host}: in doubt: {stored['doubt']}")
                last = _last_end(self.root(host))
                if last is not None and last != "0":
                    found.append(f"{host}: the last phase in its record ended {last}")
            if state["interrupted"] or state["rollbacks"] or state["lock"]:
                found.append(f"{env}: unfinished: {state['interrupted']} {state['rollbacks']} lock={state['lock']}")
            if state.get("route") is not None:
                found += self._route_problems(state["route"], actual)
        return found

    def _route_problems(self, route: dict, actual: dict[str, str | None]) -> list[str]:
        """The router holds what the store says, confirmed, nobody left drained, and its new
        side is exactly the hosts running its release."""
        found = []
        marker = next(line for line in self.nginx.route.read_text().splitlines() if "RELEASER_ROUTE " in line)
        held = json.loads(marker.split("RELEASER_ROUTE ", 1)[1])
        stored = {key: route[key] for key in ("release", "new", "drained", "share", "allow")}
        if route["applied"] is False or (route["applied"] and held != stored):
            found.append(f"the router holds {held}, the store {stored} (applied {route['applied']})")
        if route["drained"]:
            found.append(f"hosts left out of rotation: {route['drained']}")
        running = sorted(h for h, v in actual.items() if route["release"] and v == route["release"])
        if sorted(route["new"]) != running:
            found.append(f"the new side is {route['new']} but {running} run {route['release']}")
        return found


def _gray_split(actual: dict[str, str | None], releases: list[dict]) -> bool:
    """Prod may be split only as a passed gray stage leaves it: its cohort (one host) on the
    release, the rest on one other."""
    versions = list(actual.values())
    for release in releases:
        latest = {s["stage"]: s["status"] for s in release["stages"]}
        if (
            latest.get("gray") == "passed"
            and latest.get("full") != "passed"
            and versions.count(release["version"]) == 1
        ):
            return len(set(versions)) == 2
    return False


def _last_end(root: Path) -> str | None:
    record = root / ".releaser" / "record.jsonl"
    if not record.exists():
        return None
    for line in reversed(record.read_text().splitlines()):
        step = json.loads(line)
        if step["step"] == "end":
            return step["rc"]
    return None


def _descendants(pid: int, only: str) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,comm="], capture_output=True, text=True).stdout
    children: dict[int, list[tuple[int, str]]] = {}
    for line in out.splitlines():
        child, parent, command = line.split(None, 2)
        children.setdefault(int(parent), []).append((int(child), command))
    found, todo = [], [pid]
    while todo:
        for child, command in children.get(todo.pop(), []):
            todo.append(child)
            if command.startswith(only):
                found.append(child)
    return found


# Kinds journaled in one transaction with the kind that follows them: a failpoint fires when
# the transaction commits, so stopping after the first is stopping after the second.
COMMITTED_WITH_NEXT = {
    ("stage.skipped", "stage.skipped"),
    ("stage.skipped", "stage.started"),
    ("stage.passed", "report.scheduled"),
    ("rollback.done", "incident"),
}


def points_of(events: list[dict]) -> list[Point]:
    """Every journal step of a run, as (kind, stage, n-th of its kind in that stage), one per
    commit."""
    seen: dict[tuple[str, str | None], int] = {}
    points = []
    for index, event in enumerate(events):
        key = (event["kind"], event["stage"])
        seen[key] = seen.get(key, 0) + 1
        following = events[index + 1]["kind"] if index + 1 < len(events) else None
        if (event["kind"], following) not in COMMITTED_WITH_NEXT:
            points.append(Point(event["kind"], event["stage"], seen[key]))
    return points


@dataclass
class Family:
    """A kind of run to stop: how to set it up, the command to stop, and what to undo after."""

    name: str
    command: list[str]
    setup: object = None  # callable(lab) run before the command
    after: object = None  # callable(lab) run after resume (undo what setup did)
    sick: bool = False  # the release the command promotes is a bad one
    covers: frozenset[str] = frozenset()  # step kinds its run must reach (more are enumerated)


@dataclass
class Outcome:
    point: str
    signal: str
    exit_code: int
    resume_code: int
    resume_seconds: float
    problems: list[str]

    @property
    def consistent(self) -> bool:
        return not self.problems


def reference(lab: Lab, family: Family) -> list[Point]:
    """Run the family once undisturbed; its journal steps are the points to stop at."""
    if family.setup:
        family.setup(lab)
    command = _command(lab, family)
    before = len(lab.events())
    proc = lab.cli(*command)
    if family.after:
        family.after(lab)
    events = [e for e in lab.events()[before:] if e["kind"] != "release.created"]
    first = next((i for i, e in enumerate(events) if e["kind"] in FIRST_STEP), 0)
    assert "Traceback" not in proc.stderr, proc.stderr
    return points_of(events[first:])


def _command(lab: Lab, family: Family) -> list[str]:
    if "{version}" not in family.command:
        return family.command
    version = lab.new_release(sick=family.sick)
    return [arg.replace("{version}", version) for arg in family.command]


FIRST_STEP = ("stage.started", "rollback.started", "lock.taken_over", "stage.skipped", "stage.resumed")


def inject(lab: Lab, family: Family, point: Point, signal_name: str) -> Outcome:
    """Stop the family's command at `point` with `signal_name`, resume, and ask the oracle."""

    if family.setup:
        family.setup(lab)
    command = _command(lab, family)
    events_before = len(lab.events())
    stopped = lab.cli(*command, failpoint=f"{point}:{signal_name}")
    problems = []
    if "Traceback" in stopped.stderr:
        problems.append(f"traceback: {stopped.stderr[-800:]}")
    if signal_name == "KILL" and stopped.returncode != -signal.SIGKILL:
        problems.append(f"never stopped at {point} (exit {stopped.returncode})")
    if signal_name == "TERM" and stopped.returncode not in (0, 1, 4):  # 0: it had already passed or finished
        problems.append(
            f"SIGTERM at {point} ended with exit {stopped.returncode}, not like a failed stage: {stopped.stderr[-400:]}"
        )
    started = time.monotonic()
    code, stderr = lab.resume()
    seconds = time.monotonic() - started
    if "Traceback" in stderr:
        problems.append(f"traceback in resume: {stderr[-800:]}")
    if code not in (0, 1):
        problems.append(f"resume exited {code}: {stderr[-600:]}")
    if family.after:
        family.after(lab)
    events = lab.events()
    if len(events) < events_before or not any(
        e["kind"] == point.kind and (point.stage is None or e["stage"] == point.stage) for e in events[events_before:]
    ):
        problems.append(f"the journal lost the event of {point}")
    ids = [e["id"] for e in events]
    if ids != sorted(ids):
        problems.append("journal ids out of order")
    problems += lab.problems()
    return Outcome(str(point), signal_name, stopped.returncode, code, seconds, problems)


def families(routed: bool = False) -> list[Family]:
    """The runs the matrix stops: a promotion of each stage, a stage's rollback, a rollback
    window's, a manual rollback, and `resume --rollback` of a promotion killed mid-switch; on a
    routed lab, prod's: gray by users, full with drained switches, a bad release routed back."""

    def sicken_test(lab: Lab) -> None:
        version = lab.new_release()
        lab.run("promote", version, "--to", "test", "--force", "--reason", "fault matrix")
        lab.sicken("test")

    def heal_test(lab: Lab) -> None:
        lab.sicken("test", False)

    def deployed_test(lab: Lab) -> None:
        version = lab.new_release()
        lab.run("promote", version, "--to", "test", "--force", "--reason", "fault matrix")

    def killed_in_test_switch(lab: Lab) -> None:
        version = lab.new_release()
        killed = lab.cli(
            "promote",
            version,
            "--to",
            "test",
            "--force",
            "--reason",
            "fault matrix",
            failpoint="switch.finished@test#1:KILL",
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr

    stage = frozenset(
        {
            "stage.started",
            "wave.started",
            "prepare.started",
            "prepare.finished",
            "switch.started",
            "switch.finished",
            "bake.started",
            "checks.pass",
            "stage.passed",
        }
    )
    rollback = frozenset({"rollback.started", "rollback.planned", "switch.started", "switch.finished", "incident"})
    promote = [
        Family(
            f"promote {name}",
            ["promote", "{version}", "--to", name, "--force", "--reason", "matrix"],
            covers=stage - {"stage.passed"} | {"report.scheduled"} if name == "full" else stage,
        )
        for name in STAGES
    ]
    routes = frozenset({"route.changing", "route.changed"})
    if routed:
        return [
            *(replace(family, covers=family.covers | routes) for family in promote[2:]),
            Family(
                "gray rollback",
                ["promote", "{version}", "--to", "gray", "--force", "--reason", "matrix"],
                sick=True,
                covers=rollback | routes | {"stage.failed"},
            ),
        ]
    return [
        *promote,
        Family(
            "stage rollback",
            ["promote", "{version}", "--to", "test", "--force", "--reason", "matrix"],
            sick=True,
            covers=stage - {"checks.pass", "stage.passed"} | {"checks.fail", "stage.failed"} | rollback,
        ),
        Family("window rollback", ["watch", "--once"], setup=sicken_test, after=heal_test, covers=rollback),
        Family(
            "manual rollback", ["rollback", "test", "--reason", "fault matrix"], setup=deployed_test, covers=rollback
        ),
        Family(
            "resume rollback",
            ["resume", "--rollback"],
            setup=killed_in_test_switch,
            covers=rollback | {"stage.resumed", "stage.failed"},
        ),
    ]
