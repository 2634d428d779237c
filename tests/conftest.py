"""Shared fixtures: a project of local-transport hosts, a health server, artifacts, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.postgres import PostgresServer
from tests.sshd import SshFleet
from tests.tarballs import tar_gz

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


class HealthServer:
    """Answers /health/<host> with 200 unless the host's current release lists it in FAIL_ON."""

    def __init__(self):
        self.roots: dict[str, Path] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
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

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


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


@pytest.fixture
def health():
    server = HealthServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def ssh_fleet(tmp_path_factory):
    """13 SSH hosts (dev 1, test 2, prod 10) on 127.0.0.2-14, four per sshd."""
    fleet = SshFleet(tmp_path_factory.mktemp("sshd"), sum(len(h) for h in HOSTS.values()), per_sshd=4)
    yield fleet
    fleet.close()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for this test process; each test takes a database of its own."""
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture
def project(tmp_path, health) -> Project:
    return make_project(tmp_path, health)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_project(request, tmp_path, health) -> Project:
    """The project, with its state on each backend in turn."""
    url = request.getfixturevalue("postgres").database() if request.param == "postgresql" else None
    return make_project(tmp_path, health, url)


def make_project(tmp_path: Path, health: HealthServer, state_url: str | None = None) -> Project:
    proj = Project(tmp_path / "proj", health, state_url=state_url)
    proj.dir.mkdir()
    (proj.dir / "playbooks").mkdir()
    (proj.dir / "playbooks" / "app.yaml").write_text(PLAYBOOK)
    (proj.dir / "healthchecks").mkdir()
    (proj.dir / "healthchecks" / "health.yaml").write_text(CHECKS)
    proj.write_config()
    return proj


class Receiver:
    """Records POSTed JSON per path; /broken/... always answers 500."""

    def __init__(self):
        self.received: dict[str, list[dict]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.setdefault(self.path, []).append(body)
                self.send_response(500 if self.path.startswith("/broken") else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.httpd.shutdown()
