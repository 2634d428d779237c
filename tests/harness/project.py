"""A configuration directory of 13 local hosts (dev 1, test 2, prod 10) with a health server,
and helpers to drive releaser on it: the project most tests promote releases in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.loopback import Loopback, QuietHandler
from tests.harness.marks import needs
from tests.harness.sshd import SshFleet
from tests.harness.tarballs import tar_gz

HOSTS = {"dev": ["dev-1"], "test": ["test-1", "test-2"], "prod": [f"web-{i}" for i in range(1, 11)]}

PLAYBOOK = """\
keep_releases: 3
shared: [logs]
hooks:
  prepare: |
    if [ -f FAIL_PREPARE ] && grep -qxE "all|$RELEASER_HOST" FAIL_PREPARE; then
      echo "prepare refused by FAIL_PREPARE" >&2; exit 9
    fi
  restart: |
    echo "$RELEASER_RELEASE" > "$RELEASER_ROOT/shared/running"
    if [ -n "${RESTART_DELAY:-}" ]; then sleep "$RESTART_DELAY"; fi
  verify: |
    test "$(cat REVISION)" = "$RELEASER_RELEASE"
  version: |
    cat "$RELEASER_ROOT/shared/running"
"""

CHECKS = """\
checks:
  - name: health
    type: http
    url: "http://127.0.0.1:{HEALTH_PORT}/health/{name}"
    expect_status: [200]
    timeout: 2s
"""


class HealthServer(Loopback):
    """Answers /health/<host> with 200 unless the host's current release lists it in FAIL_ON."""

    def __init__(self):
        self.roots: dict[str, Path] = {}
        server = self

        class Handler(QuietHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                root = server.roots.get(name)
                fail_on = root / "current" / "FAIL_ON" if root else None
                healthy = (
                    root is not None
                    and (root / "current").exists()
                    and not (fail_on.exists() and name in fail_on.read_text().split())
                )
                self.send_response(200 if healthy else 503)
                self.end_headers()
                self.wfile.write(b"ok" if healthy else b"sick")

        super().__init__(Handler)


@dataclass
class Project:
    """A configuration directory with 13 local hosts and helpers to drive releaser on it."""

    dir: Path
    health: HealthServer
    stage_options: dict[str, str] = field(default_factory=dict)
    state_url: str | None = None  # the state on PostgreSQL (its URL, read from RELEASER_DATABASE_URL)

    def write_config(
        self,
        prod_parallel: int = 50,
        restart_delay: str = "",
        bake: str = "300ms",
        ssh: SshFleet | None = None,
        ssh_extra: dict | None = None,
        command_timeout: str = "20s",
        checks: str = "health",
    ) -> None:
        """Local hosts under hosts/, or with `ssh` the same hosts reached over real sshd."""
        envs = []
        addresses = iter(ssh.addresses if ssh else [])
        for env, hosts in HOSTS.items():
            parallel = prod_parallel if env == "prod" else 50
            if ssh:
                where = (
                    f'    transport: ssh\n    root: "{self.dir}/hosts/{{host}}"\n'
                    f"    ssh: {ssh.ssh_options(**(ssh_extra or {}))}\n"
                )
                host_list = ", ".join(f"{{name: {h}, address: {next(addresses)}}}" for h in hosts)
            else:
                where = "    transport: local\n    root: hosts/{host}\n"
                host_list = ", ".join(hosts)
            envs.append(
                f"  {env}:\n{where}    playbook: app\n"
                f"    parallel: {parallel}\n    command_timeout: {command_timeout}\n"
                f'    vars: {{HEALTH_PORT: "{self.health.port}", RESTART_DELAY: "{restart_delay}"}}\n'
                f"    hosts: [{host_list}]"
            )
        stages = []
        for stage, env in (("selftest", "dev"), ("test", "test"), ("gray", "prod"), ("full", "prod")):
            extra = self.stage_options.get(stage, "")
            stages.append(
                f"  - stage: {stage}\n    environment: {env}\n    checks: [{checks}]\n"
                f"    bake: {bake}\n    interval: 100ms\n{extra}"
            )
        state = "state: {backend: postgresql}\n" if self.state_url else ""
        config = f"project: shop\n{state}environments:\n" + "\n".join(envs) + "\npipeline:\n" + "".join(stages)
        (self.dir / "environments.yaml").write_text(config)
        for hosts in HOSTS.values():
            for host in hosts:
                self.health.roots[host] = self.dir / "hosts" / host

    def artifact(
        self,
        version: str,
        fail_on: tuple[str, ...] = (),
        fail_prepare: bool | tuple[str, ...] = False,
        files: dict[str, str] | None = None,
    ) -> Path:
        """A release tarball; FAIL_ON hosts report sick, FAIL_PREPARE hosts (or all) fail to prepare."""
        files = {"app.txt": f"app {version}\n", **(files or {})}
        if fail_on:
            files["FAIL_ON"] = " ".join(fail_on) + "\n"
        if fail_prepare:
            files["FAIL_PREPARE"] = "\n".join(fail_prepare if isinstance(fail_prepare, tuple) else ["all"]) + "\n"
        path = self.dir / "artifacts" / f"app-{version}.tar.gz"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(tar_gz(files))
        return path

    def cli(
        self, *args: str, check: bool | int = False, timeout: float = 120, actor: str | None = None
    ) -> subprocess.CompletedProcess:
        needs("real")
        proc = subprocess.run(
            [sys.executable, "-m", "releaser.cli", "-C", str(self.dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.environ(actor),
        )
        expected = 0 if check is True else check
        if check is not False and proc.returncode != expected:
            raise AssertionError(f"releaser {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def environ(self, actor: str | None = None) -> dict[str, str]:
        """The variables releaser runs with: no colour, the state's URL when it is on PostgreSQL,
        and who acts (RELEASER_ACTOR) when given."""
        return {
            **os.environ,
            "NO_COLOR": "1",
            **({"RELEASER_DATABASE_URL": self.state_url} if self.state_url else {}),
            **({"RELEASER_ACTOR": actor} if actor else {}),
        }

    def spawn(self, *args: str, actor: str | None = None) -> subprocess.Popen:
        needs("real")
        return subprocess.Popen(
            [sys.executable, "-m", "releaser.cli", "-C", str(self.dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.environ(actor),
        )

    def register(self, version: str, **kwargs) -> None:
        self.cli("release", "create", version, "--artifact", str(self.artifact(version, **kwargs)), check=True)

    def status(self) -> dict:
        return json.loads(self.cli("status", "--json", check=True).stdout)

    def current(self, host: str) -> str | None:
        link = self.dir / "hosts" / host / "current"
        return os.readlink(link).removeprefix("releases/") if link.is_symlink() else None

    def env_versions(self, env: str) -> dict[str, str | None]:
        return {host: self.current(host) for host in HOSTS[env]}


def make_project(tmp_path: Path, health: HealthServer, state_url: str | None = None) -> Project:
    proj = Project(tmp_path / "proj", health, state_url=state_url)
    proj.dir.mkdir()
    (proj.dir / "playbooks").mkdir()
    (proj.dir / "playbooks" / "app.yaml").write_text(PLAYBOOK)
    (proj.dir / "healthchecks").mkdir()
    (proj.dir / "healthchecks" / "health.yaml").write_text(CHECKS)
    proj.write_config()
    return proj


def live(project: Project, *versions: str) -> None:
    """Register each version and promote it through every stage."""
    for version in versions:
        project.register(version)
        project.cli("run", version, check=True)


def break_host(project: Project, host: str) -> None:
    """The running release starts failing its health check on `host` (as a slow leak would)."""
    (project.dir / "hosts" / host / "current" / "FAIL_ON").write_text(f"{host}\n")


def wait_for_event(project: Project, kind: str, release: str | None = None, timeout: float = 30) -> None:
    """Until the journal (`releaser history`) holds a `kind` event, of `release` when given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = project.cli("history", "--json", *(("--release", release) if release else ()))
        if proc.returncode == 0 and any(e["kind"] == kind for e in json.loads(proc.stdout)["events"]):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {kind} event within {timeout}s")


def gated(project: Project) -> Path:
    """The restart hook waits at a gate file the test opens: a runner held mid-stage, on purpose."""
    gate = project.dir / "gate"
    playbook = project.dir / "playbooks" / "app.yaml"
    playbook.write_text(
        playbook.read_text().replace(
            '    if [ -n "${RESTART_DELAY:-}" ]; then sleep "$RESTART_DELAY"; fi\n',
            f"    while [ ! -e {gate} ]; do sleep 0.05; done\n",
        )
    )
    gate.touch()
    return gate
