"""Services releaser runs for tarball releases (`service:` in the playbook): started detached in
the release's directory with their own log, stopped gracefully then forcibly, ready before a
stage goes on. The hosts are local; the services are real processes (Python's http.server)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from releaser.cli import cli
from releaser.config import load_config
from releaser.demo.ports import free_ports
from releaser.images import Resolved, parse_image
from releaser.journal import Journal
from releaser.releases import create_image_release
from releaser.store import open_store
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

    def with_secrets(self) -> None:
        config = self.dir / "environments.yaml"
        config.write_text(
            config.read_text().replace("    hosts:", "    secrets: {DB_PASSWORD: {env: SHOP_DB_PASSWORD}}\n    hosts:")
        )

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
    assert (
        "exited (status 3) before it was ready" in result.output
        and "config file /etc/shop.ini missing" in result.output
    )
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


SECRET = "s3cr3t-ZXQ-4242-value"
TEMPLATE = """\
[server]
host = {{ name }}
port = {{ PORT }}
release = {{ release }}{% if environment == "dev" %}
debug = true{% endif %}
"""


def test_templates_are_rendered_per_host_and_secrets_reach_the_app_alone(services, monkeypatch):
    monkeypatch.setenv("SHOP_DB_PASSWORD", SECRET)
    (services.dir / "templates").mkdir()
    (services.dir / "templates" / "app.ini.j2").write_text(TEMPLATE)
    services.with_secrets()
    playbook = services.dir / "playbooks" / "app.yaml"
    told = 'printf %s "$DB_PASSWORD" | sha256sum > told; ' + SERVES
    services.playbook(told)
    playbook.write_text(
        playbook.read_text()
        + "templates: {config/app.ini: templates/app.ini.j2}\n"
        + "hooks:\n  prepare: env > hook-env\n"
    )
    services.release("1.0")
    result = services.cli("run", "1.0")
    assert result.exit_code == 0, result.output

    root = services.dir / "hosts" / "a"
    assert (root / "releases" / "1.0" / "config" / "app.ini").read_text() == (
        f"[server]\nhost = a\nport = {services.ports['a']}\nrelease = 1.0\ndebug = true\n"
    )
    told_hash = (root / "releases" / "1.0" / "told").read_text().split()[0]
    assert told_hash == hashlib.sha256(SECRET.encode()).hexdigest()  # the app had it
    secrets_file = root / ".releaser" / "secrets" / "app.env"
    assert secrets_file.stat().st_mode & 0o777 == 0o600 and secrets_file.parent.stat().st_mode & 0o777 == 0o700
    # nowhere else: not in a file releaser wrote (state, journal, records, hooks' environment), not in
    # its output, not in a process list
    assert SECRET not in result.output
    for path in services.dir.rglob("*"):
        if path.is_file() and path.relative_to(path.parents[2]) != Path(".releaser/secrets/app.env"):
            assert SECRET.encode() not in path.read_bytes(), path
    processes = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True).stdout
    assert SECRET not in processes


def test_a_secret_whose_variable_is_not_set_stops_the_stage_before_it_starts(services, monkeypatch):
    monkeypatch.delenv("SHOP_DB_PASSWORD", raising=False)
    services.with_secrets()
    services.release("1.0")
    result = services.cli("run", "1.0")
    assert result.exit_code == 2
    assert "DB_PASSWORD (from $SHOP_DB_PASSWORD: not set)" in result.output
    history = services.cli("history", "--json").output
    assert "stage.started" not in history


def test_a_host_without_the_container_runtime_is_named_before_the_stage_starts(tmp_path):
    """The hosts' PATH has bash and the tools the pre-flight uses, and no podman."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "id", "mkdir"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    setup = Services(tmp_path / "proj")
    (setup.dir / "playbooks" / "app.yaml").write_text("container: {name: shop}\n")
    config = load_config(setup.dir / "environments.yaml")
    store = open_store(config)
    image = parse_image("127.0.0.1:5999/shop:1.0")
    create_image_release(store, Journal(store), "1.0", image, Resolved(digest="sha256:" + "ab" * 32, size=1))
    store.close()
    result = CliRunner(env={"NO_COLOR": "1", "PATH": str(bin_dir)}).invoke(
        cli, ["-C", str(setup.dir), "promote", "1.0"], catch_exceptions=False
    )
    assert result.exit_code == 2, result.output
    assert "the container runtime podman is not installed" in result.output
    assert "stage.started" not in setup.cli("history", "--json").output


def test_a_wrong_ready_url_fails_the_deploy_and_the_rollback_leaves_the_old_release_running(services):
    """The ready URL is the playbook's, so the rollback's check fails the same way: the release
    it goes back to stays up (unproven), rather than a fleet with nothing running."""
    services.release("1.0")
    assert services.cli("run", "1.0").exit_code == 0
    playbook = services.dir / "playbooks" / "app.yaml"
    playbook.write_text(
        playbook.read_text().replace("http://127.0.0.1:{PORT}/", "http://127.0.0.1:9/").replace("20s", "1s")
    )
    services.release("1.1")
    result = services.cli("run", "1.1")
    assert result.exit_code == 4, result.output
    assert "it is left running: check the ready URL in the playbook" in result.output
    for host in services.ports:
        assert services.cwd(host).endswith("/releases/1.0") and _alive(services.pid(host))


def test_a_manual_rollback_without_the_secrets_changes_nothing(services, monkeypatch):
    monkeypatch.setenv("SHOP_DB_PASSWORD", SECRET)
    services.with_secrets()
    for version in ("1.0", "1.1"):
        services.release(version)
        assert services.cli("run", version).exit_code == 0
    monkeypatch.delenv("SHOP_DB_PASSWORD")
    before = services.cli("history", "--json").output
    result = services.cli("rollback", "dev", "--reason", "try")
    assert result.exit_code == 2 and "DB_PASSWORD (from $SHOP_DB_PASSWORD: not set)" in result.output
    assert services.cli("history", "--json").output == before


def test_a_container_runtime_that_does_not_work_is_named_before_the_stage_starts(tmp_path):
    """A runtime whose daemon is down (docker without dockerd) is a host's mistake, not a release
    failure: the pre-flight asks it, as a phase would (with the hooks' variables)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "docker"
    broken.write_text(
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock' >&2\nexit 1\n"
    )
    broken.chmod(0o755)
    setup = Services(tmp_path / "proj")
    (setup.dir / "playbooks" / "app.yaml").write_text("container: {name: shop}\n")
    config = setup.dir / "environments.yaml"
    config.write_text(
        config.read_text().replace(
            "    hosts:", f"    runtime: docker\n    vars: {{PATH: '{bin_dir}:/usr/bin:/bin'}}\n    hosts:"
        )
    )
    store = open_store(load_config(config))
    image = parse_image("127.0.0.1:5999/shop:1.0")
    create_image_release(store, Journal(store), "1.0", image, Resolved(digest="sha256:" + "ab" * 32, size=1))
    store.close()
    result = setup.cli("promote", "1.0")
    assert result.exit_code == 2, result.output
    assert "the container runtime docker does not work for" in result.output
    assert "Cannot connect to the Docker daemon" in result.output
    assert "stage.started" not in setup.cli("history", "--json").output


def test_a_template_naming_an_undefined_value_is_reported_at_its_own_line(services):
    (services.dir / "templates").mkdir()
    (services.dir / "templates" / "app.ini.j2").write_text("[server]\nport = {{ PORT }}\nhost = {{ hostname }}\n")
    playbook = services.dir / "playbooks" / "app.yaml"
    playbook.write_text(playbook.read_text() + "templates: {config/app.ini: templates/app.ini.j2}\n")
    result = services.cli("validate")
    assert result.exit_code == 2
    assert "templates/app.ini.j2:3: for host a: 'hostname' is undefined" in result.output
