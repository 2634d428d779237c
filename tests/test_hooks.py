"""Hooks that go wrong the ways newcomers' hooks do: a server run in the foreground, a background
process left holding the connection, a hook that fails; and `init`'s scaffold run as written."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from releaser.transport.local import LocalSession
from tests.harness.sshd import ssh_session
from tests.harness.tarballs import tar_gz

HANGS_ON_1_1_0 = """  restart: |
    echo "$RELEASER_RELEASE" > "$RELEASER_ROOT/shared/running"
    if [ "$RELEASER_RELEASE" = 1.1.0 ]; then sleep 300; fi     # a server run in the foreground
"""
FAILS_ON_1_1_0 = """  verify: |
    test "$(cat REVISION)" = "$RELEASER_RELEASE"
    if [ "$RELEASER_RELEASE" = 1.1.0 ]; then
      echo "connecting to the database" >&2
      echo "db migration 42 missing" >&2
      echo "relation orders_batch does not exist" >&2
      exit 3
    fi
"""


def _playbook(project, old: str, new: str) -> None:
    path = project.dir / "playbooks" / "app.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_hook_that_does_not_return_is_named_with_what_it_waits_for(project):
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    project.register("1.1.0")
    project.write_config(command_timeout="6s")
    config = project.dir / "environments.yaml"
    config.write_text(config.read_text().replace("command_timeout: 6s", "command_timeout: 6s\n    slow_after: 1s"))
    _playbook(
        project,
        """  restart: |
    echo "$RELEASER_RELEASE" > "$RELEASER_ROOT/shared/running"
    if [ -n "${RESTART_DELAY:-}" ]; then sleep "$RESTART_DELAY"; fi
""",
        HANGS_ON_1_1_0,
    )
    proc = project.cli("promote", "1.1.0")
    assert proc.returncode == 1, proc.stderr
    # while it runs: which hook, no output, the process it waits for, and what to do
    slow = [line for line in proc.stderr.splitlines() if "dev-1: the restart hook has been running for" in line]
    assert slow, proc.stderr
    assert "with no output yet; it waits for: sleep 300 (pid " in slow[0]
    # the timeout's signal goes to the hook's whole process group; should it not have arrived yet, the
    # process must still not outlive the test
    waited = int(re.search(r"sleep 300 \(pid (\d+)", slow[0]).group(1))
    with contextlib.suppress(ProcessLookupError):
        os.kill(waited, signal.SIGKILL)
    assert "it is stopped at command_timeout (6s)" in slow[0] and "nohup CMD </dev/null >>LOG 2>&1 &" in slow[0]
    # when it is stopped: the hook, the limit, the fix
    assert (
        "dev-1: switch: exit 124: releaser: the restart hook did not return within 6s (command_timeout); "
        "a hook must return" in proc.stderr
    )
    assert project.current("dev-1") == "1.0.0"


def test_a_failed_hook_reports_its_own_exit_status_and_the_tail_of_its_stderr(project):
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    project.register("1.1.0")
    _playbook(
        project,
        """  verify: |
    test "$(cat REVISION)" = "$RELEASER_RELEASE"
""",
        FAILS_ON_1_1_0,
    )
    proc = project.cli("promote", "1.1.0", "--json")
    assert proc.returncode == 1
    assert (
        "dev-1: verify: exit 3: connecting to the database | db migration 42 missing | "
        "relation orders_batch does not exist"
    ) in proc.stderr
    failed = [
        e
        for e in json.loads(project.cli("history", "--json", check=True).stdout)["events"]
        if e["kind"] == "host.failed"
    ]
    assert failed[0]["data"]["exit_code"] == 3


@pytest.mark.parametrize("where", ["local", pytest.param("ssh", marks=pytest.mark.sshd)])
def test_a_background_process_holding_the_connection_is_named_with_the_fix(where, request):
    if where == "local":
        session = LocalSession(None)
    else:
        fleet = request.getfixturevalue("ssh_fleet")
        session = ssh_session(fleet, fleet.addresses[0])
    marker = f"held-{os.getpid()}-{where}"
    try:
        started = time.monotonic()
        result = session.run(f"(exec -a {marker} sleep 300) & echo started; exit 0", 60)
        assert time.monotonic() - started < 30  # not the 60 s timeout: the exit was seen
        assert result.held and not result.ok and result.exit_code == 0 and result.stdout == "started\n"
        assert (
            "the script ended (exit 0) but a process it started in the background still holds its output"
            in result.stderr
            and "nohup CMD </dev/null >>LOG 2>&1 &" in result.stderr
        )
        # nohup execs its command: the marker goes on the command itself, or pkill would not find it
        redirected = session.run(
            f"nohup bash -c 'exec -a {marker} sleep 300' </dev/null >/dev/null 2>&1 & echo started", 60
        )
        assert redirected.ok and not redirected.held
    finally:
        subprocess.run(["pkill", "-f", marker], check=False)
        session.close()


RESTART = """  restart: |
    echo "$RELEASER_RELEASE" > "$RELEASER_ROOT/shared/running"
    if [ -n "${RESTART_DELAY:-}" ]; then sleep "$RESTART_DELAY"; fi
"""


def test_a_daemon_left_on_a_detached_phase_output_is_caught_with_the_fix(project):
    """`restart: server &` without redirects: the phase runs detached on the host, so nothing
    holds a connection, but the daemon writes to the phase's output, which the phase removes."""
    marker = f"daemon-{os.getpid()}"
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    project.register("1.1.0")
    _playbook(
        project,
        RESTART,
        RESTART
        + f"""    if [ "$RELEASER_RELEASE" = 1.1.0 ]; then
      (exec -a {marker} sleep 300) &
    fi
""",
    )
    try:
        proc = project.cli("promote", "1.1.0")
        assert proc.returncode == 1, proc.stderr
        assert "the restart hook returned but left pid" in proc.stderr and marker in proc.stderr
        assert "writing to the phase's output, which is removed when the phase ends" in proc.stderr
        assert "nohup CMD </dev/null >>LOG 2>&1 &" in proc.stderr
        assert project.current("dev-1") == "1.0.0"  # caught at the first stage, rolled back
    finally:
        subprocess.run(["pkill", "-f", marker], check=False)
    # redirected as the hint says, the same daemon passes
    _playbook(
        project,
        f"(exec -a {marker} sleep 300) &",
        f"nohup bash -c 'exec -a {marker} sleep 300' </dev/null >/dev/null 2>&1 &",
    )
    try:
        project.cli("promote", "1.1.0", check=True)
    finally:
        subprocess.run(["pkill", "-f", marker], check=False)


def test_a_hook_polling_for_readiness_is_not_called_hung(project):
    project.register("1.0.0")
    project.write_config(command_timeout="30s")
    config = project.dir / "environments.yaml"
    config.write_text(config.read_text().replace("command_timeout: 30s", "command_timeout: 30s\n    slow_after: 1s"))
    _playbook(
        project,
        RESTART,
        RESTART
        + """    for _ in $(seq 1 90); do sleep 0.1; done    # waits for the app
""",
    )
    proc = project.cli("promote", "1.0.0", check=True)
    slow = [line for line in proc.stderr.splitlines() if "dev-1: the restart hook has been running for" in line]
    told = [line for line in slow if "a loop still waiting for something to answer" in line]
    assert told, proc.stderr  # once it has run long enough to tell (4s), while its commands come and go
    assert not any("nohup" in line for line in told)


@pytest.mark.real  # the scaffold's demo app, as a subprocess
def test_init_scaffold_runs_as_written_on_one_machine(tmp_path):
    def releaser(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "releaser.cli", "-C", str(tmp_path / "deploy"), *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert not check or proc.returncode == 0, proc.stderr
        return proc

    (tmp_path / "deploy").mkdir()
    init = releaser("init")
    assert "every key is documented in environments.example.yaml" in init.stderr
    example = tmp_path / "deploy" / "environments.example.yaml"
    assert example.is_file() and "rollback_window" in example.read_text()  # the documentation, shipped
    config = tmp_path / "deploy" / "environments.yaml"
    ports = re.findall(r'PORT: "(\d+)"', config.read_text())
    assert len(ports) == 6 and len(set(ports)) == 6  # one port per host: they share this machine
    # as written, with bakes of a second instead of minutes
    config.write_text(
        re.sub(r"bake: (\{[^}]*\}|\w+)", "bake: 1s", config.read_text()).replace("interval: 15s", "interval: 200ms")
    )
    (tmp_path / "app.tar.gz").write_bytes(tar_gz({"index.html": "hello\n"}))
    releaser("release", "create", "0.1.0", "--artifact", str(tmp_path / "app.tar.gz"))
    try:
        run = releaser("run", "0.1.0", "--json")
        assert [r["status"] for r in json.loads(run.stdout)["runs"]] == ["passed"] * 4
    finally:
        for pidfile in (tmp_path / "deploy" / "hosts").glob("*/shared/app.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
    assert not list(Path(tmp_path / "deploy" / "hosts").glob("*/.releaser/phases/*.pid"))
