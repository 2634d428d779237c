"""Playbook scripts run for real under bash, with hostile paths, ids and values."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from releaser import playbook as pb
from releaser.hostrecord import outcome_of, parse_view, steps_in
from releaser.model import Environment, Host, Playbook
from releaser.transport.local import LocalSession
from releaser.transport.ssh import SshTransport
from tests.harness.tarballs import tar_gz

NASTY = "we ird $(touch PWNED) `touch PWNED2` 'q' \"d\"; echo hi & * ? \\ end"


def artifact(tmp_path: Path, version: str) -> tuple[Path, str]:
    data = tar_gz({"app.txt": f"app {version}\n"})
    path = tmp_path / f"{version}.tar.gz"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", pytest.param("ssh", marks=pytest.mark.sshd)])
def setup(request, tmp_path):
    """The same scripts through the local transport and through a real sshd."""
    root = tmp_path / NASTY / "host root"
    host = Host("web-1", "127.0.0.1", str(root), {"GREETING": NASTY, "PORT": "80"})
    book = Playbook(
        "app",
        "app.yaml",
        {
            "prepare": 'printf "%s" "$GREETING" > greeting.txt; printf "%s" "$RELEASER_ADDRESS" > address.txt',
            "restart": 'printf "%s\\n" "$RELEASER_RELEASE" >> "$RELEASER_ROOT/shared/restarts"',
            "verify": 'test "$(cat REVISION)" = "$RELEASER_RELEASE"',
        },
        shared=("log dir",),
        keep_releases=2,
    )
    if request.param == "local":
        yield tmp_path, host, book, LocalSession(host)
        return
    fleet = request.getfixturevalue("ssh_fleet")
    fleet.heal()
    host = replace(host, address=fleet.addresses[0], ssh=fleet.options())
    session = SshTransport(Environment("prod", "ssh", "app", (host,))).connect(host)
    yield tmp_path, host, book, session
    session.close()


def phase(session, host, script, op, action, release):
    """Run a phase as releaser does: detached on the host, under its phase lock."""
    return session.run(pb.detached(script, host, op, "run-1", action, release, 30), 80)


def switch(session, host, book, version, action="deploy"):
    op = pb.new_op()
    result = phase(session, host, pb.switch_script(book, host, version, action, op, "run-1"), op, action, version)
    return result, outcome_of(steps_in(result.stdout), op)


def deploy(tmp_path, host, book, session, version):
    path, digest = artifact(tmp_path, version)
    session.put(str(path), pb.artifact_path(host, version))
    op = pb.new_op()
    prepared = phase(session, host, pb.prepare_script(book, host, version, digest, op, "run-1"), op, "prepare", version)
    assert prepared.ok, prepared.stderr
    switched, outcome = switch(session, host, book, version)
    assert switched.ok, switched.stderr
    return outcome


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0+build.7", "v3_rc-1"])
def test_hostile_paths_and_values_are_quoted(setup, version):
    tmp_path, host, book, session = setup
    outcome = deploy(tmp_path, host, book, session, version)
    root = Path(host.root)
    assert os.readlink(root / "current") == f"releases/{version}"
    assert (root / "current" / "app.txt").read_text() == f"app {version}\n"
    assert (root / "current" / "REVISION").read_text() == f"{version}\n"
    assert (root / "current" / "greeting.txt").read_text() == NASTY
    assert (root / "current" / "address.txt").read_text() == host.address  # hooks know where they run
    assert os.readlink(root / "current" / "log dir") == "../../shared/log dir"
    assert outcome.ok and outcome.switched and outcome.previous is None
    assert not list(tmp_path.rglob("PWNED*")) and not Path("PWNED").exists()
    record = [json.loads(line) for line in (root / ".releaser" / "record.jsonl").read_text().splitlines()]
    assert [(r["action"], r["step"]) for r in record[-5:]] == [
        ("deploy", "begin"),
        ("deploy", "switched"),
        ("deploy", "restarted"),
        ("deploy", "verified"),
        ("deploy", "end"),
    ]
    assert record[-1]["release"] == version and record[-1]["rc"] == "0"
    view = parse_view(host.name, session.run(pb.probe_script(book, host, 10), 30).stdout)
    assert view.current == version and view.previous(version) is None


def test_switch_is_atomic_rename_and_cleanup_keeps_current_and_previous(setup):
    tmp_path, host, book, session = setup
    for version in ("1", "2", "3", "4"):
        outcome = deploy(tmp_path, host, book, session, version)
    assert outcome.switched and outcome.previous == "3"
    root = Path(host.root)
    assert sorted(os.listdir(root / "releases")) == ["3", "4"]  # keep_releases: 2
    assert not [p for p in os.listdir(root) if p.startswith(".current.tmp")]
    assert (root / "shared" / "restarts").read_text().split() == ["1", "2", "3", "4"]
    # rollback goes through the same switch, to a release still on the host
    back, _ = switch(session, host, book, "3", "rollback")
    assert back.ok and os.readlink(root / "current") == "releases/3"
    # to a release that was cleaned up: refused with a distinct code, nothing moves
    gone, outcome = switch(session, host, book, "1", "rollback")
    assert gone.exit_code == pb.EXIT_NOT_PREPARED
    assert os.readlink(root / "current") == "releases/3"
    assert not outcome.switched and outcome.failed_step == "not-prepared"


def test_checksum_mismatch_fails_prepare_and_leaves_no_release(setup):
    tmp_path, host, book, session = setup
    path, _ = artifact(tmp_path, "9")
    session.put(str(path), pb.artifact_path(host, "9"))
    result = phase(session, host, pb.prepare_script(book, host, "9", "0" * 64, "op9", "run-1"), "op9", "prepare", "9")
    assert result.exit_code == 65
    assert "checksum mismatch" in result.stderr
    assert not (Path(host.root) / "releases" / "9").exists()


def test_a_command_that_hangs_is_killed_at_its_timeout(setup):
    _, _, _, session = setup
    result = session.run("sleep 30 & sleep 30", 0.5)
    assert result.timed_out and not result.ok
    assert result.duration < 10


def test_a_failing_verify_hook_is_reported_after_the_switch(setup):
    tmp_path, host, book, session = setup
    deploy(tmp_path, host, book, session, "1")
    broken = Playbook(book.name, book.file, {**book.hooks, "verify": "exit 3"}, book.shared, book.keep_releases)
    path, digest = artifact(tmp_path, "2")
    session.put(str(path), pb.artifact_path(host, "2"))
    assert phase(session, host, pb.prepare_script(broken, host, "2", digest, "op2", "run-1"), "op2", "prepare", "2").ok
    result, outcome = switch(session, host, broken, "2")
    assert result.exit_code == 3  # the hook's own status, its words last
    assert outcome.switched and outcome.previous == "1" and outcome.failed_step == "verify exit 3"
    assert outcome.finished and not outcome.ok  # switched: the caller must roll it back


def test_a_phase_finishes_on_the_host_when_the_connection_dies(setup):
    """The controller's side of a switch dies mid-restart; the host finishes the phase as a
    whole (restart, verify, record) and a later probe reads the outcome from its record."""
    tmp_path, host, book, session = setup
    deploy(tmp_path, host, book, session, "1")
    root = Path(host.root)
    barrier = root / "shared" / "HOLD"
    barrier.write_text("")
    held = Playbook(
        book.name,
        book.file,
        {
            **book.hooks,
            "restart": ('while [ -f "$RELEASER_ROOT/shared/HOLD" ]; do sleep 0.02; done\n' + book.hooks["restart"]),
        },
        book.shared,
        book.keep_releases,
    )
    path, digest = artifact(tmp_path, "2")
    session.put(str(path), pb.artifact_path(host, "2"))
    assert phase(session, host, pb.prepare_script(held, host, "2", digest, "op2", "run-1"), "op2", "prepare", "2").ok
    op = pb.new_op()
    worker = threading.Thread(
        target=lambda: _swallow(
            lambda: phase(session, host, pb.switch_script(held, host, "2", "deploy", op, "run-1"), op, "deploy", "2")
        )
    )
    worker.start()
    record = root / ".releaser" / "record.jsonl"
    wait_for(
        lambda: (
            f'"op": "{op}"' in record.read_text().replace('"op":"', '"op": "')
            and '"step":"switched"' in record.read_text().split(op, 1)[-1]
        )
    )
    _sever(session)  # the connection (or the local shell) dies mid-phase
    worker.join(timeout=60)
    barrier.unlink()
    wait_for(lambda: '"step":"end"' in record.read_text().split(op, 1)[-1])
    view = parse_view(host.name, _fresh(setup).run(pb.probe_script(held, host, 10), 30).stdout)
    outcome = outcome_of(view.steps, op)
    assert outcome.ok and outcome.switched and outcome.previous == "1"
    assert view.current == "2" and (root / "shared" / "restarts").read_text().split() == ["1", "2"]


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _swallow(action) -> None:
    with contextlib.suppress(Exception):
        action()


def _sever(session) -> None:
    if isinstance(session, LocalSession):
        # the shell the transport started, a child of this process
        subprocess.run(["pkill", "-KILL", "-P", str(os.getpid()), "-f", "^bash -s$"], check=False)
    else:
        session.connection.client.get_transport().close()


def _fresh(setup):
    _, host, _, session = setup
    if isinstance(session, LocalSession):
        return session
    return SshTransport(Environment("prod", "ssh", "app", (host,))).connect(host)
