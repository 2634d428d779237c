"""Services releaser runs for tarball releases (`service:` in the playbook): started detached in
the release's directory with their own log, stopped gracefully then forcibly, ready before a
stage goes on. The hosts are local; the services are real processes (Python's http.server)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from releaser.cli import cli
from releaser.demo.sandbox import free_ports
from tests.harness.tarballs import tar_gz

pytestmark = pytest.mark.real  # the services are real processes

SERVICE = """\
keep_releases: 3
service:
  command: {command}
  ready: "http://127.0.0.1:{{PORT}}/"
  ready_timeout: {ready_timeout}
  stop_timeout: 1s
"""
SERVES = 'exec python3 -m http.server "$PORT" --bind 127.0.0.1'
# a release holding CRASH fails at start, as an app missing its configuration does
CRASHES = "[ ! -f CRASH ] || { cat CRASH >&2; exit 3; }; " + SERVES


class Services:
    def __init__(self, directory: Path):
        self.dir = directory
        self.ports = dict(zip(("a", "b"), free_ports(2), strict=True))
        (directory / "playbooks").mkdir(parents=True)
        (directory / "healthchecks").mkdir()
        (directory / "healthchecks" / "up.yaml").write_text(
            'checks:\n  - {name: up, type: http, url: "http://127.0.0.1:{PORT}/", timeout: 2s}\n'
        )
        hosts = ", ".join(f"{{name: {h}, vars: {{PORT: '{p}'}}}}" for h, p in self.ports.items())
        (directory / "environments.yaml").write_text(
            "project: shop\nenvironments:\n  dev:\n    transport: local\n    playbook: app\n"
            f"    command_timeout: 30s\n    hosts: [{hosts}]\n"
            "pipeline:\n  - {stage: selftest, environment: dev, checks: [up], bake: 200ms, interval: 100ms}\n"
        )
        self.playbook(SERVES)

    def playbook(self, command: str, ready_timeout: str = "20s") -> None:
        text = SERVICE.format(command=json.dumps(command), ready_timeout=ready_timeout)
        (self.dir / "playbooks" / "app.yaml").write_text(text)

    def cli(self, *args: str):
        return CliRunner(env={"NO_COLOR": "1"}).invoke(cli, ["-C", str(self.dir), *args], catch_exceptions=False)

    def release(self, version: str, **files: str) -> None:
        artifact = self.dir / f"{version}.tar.gz"
        artifact.write_bytes(tar_gz({"index.html": f"{version}\n", **files}))
        result = self.cli("release", "create", version, "--artifact", str(artifact))
        assert result.exit_code == 0, result.output

    def pid(self, host: str) -> int | None:
        pidfile = self.dir / "hosts" / host / ".releaser" / "service.pid"
        return int(pidfile.read_text().split()[0]) if pidfile.exists() else None

    def cwd(self, host: str) -> str:
        pid = self.pid(host)
        return os.readlink(f"/proc/{pid}/cwd") if pid else ""

    def log(self, host: str) -> str:
        return (self.dir / "hosts" / host / "logs" / "app.log").read_text()

    def stop(self) -> None:
        for host in self.ports:
            pid = self.pid(host)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def services(tmp_path):
    setup = Services(tmp_path / "proj")
    yield setup
    setup.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_service_is_started_in_its_release_stopped_for_the_next_and_its_release_asked(services):
    services.release("1.0")
    assert services.cli("run", "1.0").exit_code == 0
    first = {host: services.pid(host) for host in services.ports}
    assert all(services.cwd(host).endswith("/releases/1.0") for host in services.ports)
    assert "starting 1.0" in services.log("a") and '"GET / HTTP/1.1" 200' in services.log("a")

    services.release("1.1")
    assert services.cli("run", "1.1").exit_code == 0
    for host, pid in first.items():
        assert not _alive(pid), "the old process was stopped"
        assert services.cwd(host).endswith("/releases/1.1")
    # what a host runs is asked of the process itself (its directory), not of `current` alone
    for host in services.ports:
        record = (services.dir / "hosts" / host / ".releaser" / "record.jsonl").read_text().splitlines()
        served = [json.loads(line) for line in record if '"step":"served"' in line]
        assert served[-1]["from"] == "1.1"


def test_a_service_that_does_not_start_fails_the_stage_with_its_last_words(services):
    services.playbook(CRASHES)
    services.release("1.0")
    assert services.cli("run", "1.0").exit_code == 0
    services.release("1.1", CRASH="config file /etc/shop.ini missing\n")
    result = services.cli("run", "1.1")
    assert result.exit_code == 1
    assert "stopped before it was ready" in result.output and "config file /etc/shop.ini missing" in result.output
    # rolled back: 1.0 runs again, started by releaser
    assert all(services.cwd(host).endswith("/releases/1.0") for host in services.ports)


def test_a_service_never_ready_is_stopped_and_the_stage_fails(services):
    services.playbook("exec sleep 300", ready_timeout="1s")
    services.release("1.0")
    result = services.cli("run", "1.0")
    assert result.exit_code == 1 and "was not ready within 1s" in result.output
    assert all(services.pid(host) is None or not _alive(services.pid(host)) for host in services.ports)


def test_a_service_that_ignores_term_is_killed_after_stop_timeout(services):
    services.playbook("trap '' TERM; " + SERVES.removeprefix("exec "))
    services.release("1.0")
    assert services.cli("run", "1.0").exit_code == 0
    stubborn = services.pid("a")
    services.playbook(SERVES)
    services.release("1.1")
    result = services.cli("run", "1.1")
    assert result.exit_code == 0, result.output
    assert not _alive(stubborn)
    assert services.cwd("a").endswith("/releases/1.1")
