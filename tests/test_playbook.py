"""Playbook scripts run for real under bash, with hostile paths, ids and values."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from releaser import playbook as pb
from releaser.model import Environment, Host, Playbook, SshOptions
from releaser.transport.local import LocalSession
from releaser.transport.ssh import SshTransport

NASTY = "we ird $(touch PWNED) `touch PWNED2` 'q' \"d\"; echo hi & * ? \\ end"


def artifact(tmp_path: Path, version: str) -> tuple[Path, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        data = f"app {version}\n".encode()
        info = tarfile.TarInfo("app.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path = tmp_path / f"{version}.tar.gz"
    path.write_bytes(raw.getvalue())
    return path, hashlib.sha256(raw.getvalue()).hexdigest()


@pytest.fixture(params=["local", "ssh"])
def setup(request, tmp_path):
    """The same scripts through the local transport and through a real sshd."""
    root = tmp_path / NASTY / "host root"
    host = Host("web-1", "127.0.0.1", str(root), {"GREETING": NASTY, "PORT": "80"})
    book = Playbook(
        "app", "app.yaml",
        {
            "prepare": 'printf "%s" "$GREETING" > greeting.txt',
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
    options = SshOptions(user=fleet.user, port=fleet.port, identity_file=str(fleet.identity),
                         known_hosts=str(fleet.known_hosts), config_file="/dev/null")
    host = replace(host, address=fleet.addresses[0], ssh=options)
    session = SshTransport(Environment("prod", "ssh", "app", (host,))).connect(host)
    yield tmp_path, host, book, session
    session.close()


def deploy(tmp_path, host, book, session, version):
    path, digest = artifact(tmp_path, version)
    session.put(str(path), pb.artifact_path(host, version))
    prepared = session.run(pb.prepare_script(book, host, version, digest), 30)
    assert prepared.ok, prepared.stderr
    switched = session.run(pb.switch_script(book, host, version, "deploy"), 30)
    assert switched.ok, switched.stderr
    return switched


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0+build.7", "v3_rc-1"])
def test_hostile_paths_and_values_are_quoted(setup, version):
    tmp_path, host, book, session = setup
    result = deploy(tmp_path, host, book, session, version)
    root = Path(host.root)
    assert os.readlink(root / "current") == f"releases/{version}"
    assert (root / "current" / "app.txt").read_text() == f"app {version}\n"
    assert (root / "current" / "REVISION").read_text() == f"{version}\n"
    assert (root / "current" / "greeting.txt").read_text() == NASTY
    assert os.readlink(root / "current" / "log dir") == "../../shared/log dir"
    assert pb.parse_switched(result.stdout) == (True, None)
    assert not list(tmp_path.rglob("PWNED*")) and not Path("PWNED").exists()
    record = json.loads((root / ".releaser" / "history.jsonl").read_text().splitlines()[-1])
    assert record["to"] == version and record["action"] == "deploy"
    probe = session.run(pb.probe_script(host), 10)
    assert pb.parse_current(probe.stdout) == version


def test_switch_is_atomic_rename_and_cleanup_keeps_current_and_previous(setup):
    tmp_path, host, book, session = setup
    for version in ("1", "2", "3", "4"):
        result = deploy(tmp_path, host, book, session, version)
    assert pb.parse_switched(result.stdout) == (True, "3")
    root = Path(host.root)
    assert sorted(os.listdir(root / "releases")) == ["3", "4"]  # keep_releases: 2
    assert not [p for p in os.listdir(root) if p.startswith(".current.tmp")]
    assert (root / "shared" / "restarts").read_text().split() == ["1", "2", "3", "4"]
    # rollback goes through the same switch, to a release still on the host
    back = session.run(pb.switch_script(book, host, "3", "rollback"), 30)
    assert back.ok and os.readlink(root / "current") == "releases/3"
    # to a release that was cleaned up: refused with a distinct code, nothing moves
    gone = session.run(pb.switch_script(book, host, "1", "rollback"), 30)
    assert gone.exit_code == pb.EXIT_NOT_PREPARED
    assert os.readlink(root / "current") == "releases/3"
    assert pb.parse_switched(gone.stdout) == (False, None)


def test_checksum_mismatch_fails_prepare_and_leaves_no_release(setup):
    tmp_path, host, book, session = setup
    path, _ = artifact(tmp_path, "9")
    session.put(str(path), pb.artifact_path(host, "9"))
    result = session.run(pb.prepare_script(book, host, "9", "0" * 64), 30)
    assert result.exit_code == pb.EXIT_CHECKSUM
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
    assert session.run(pb.prepare_script(broken, host, "2", digest), 30).ok
    result = session.run(pb.switch_script(broken, host, "2", "deploy"), 30)
    assert result.exit_code == pb.EXIT_VERIFY_FAILED
    assert pb.parse_switched(result.stdout) == (True, "1")  # switched: the caller must roll it back
