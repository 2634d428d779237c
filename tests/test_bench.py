"""The fan-out benchmark stays runnable: it says what a machine lacks, and it runs end to end."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _fanout(monkeypatch):
    """bench/fanout as a module (it has no .py name); in sys.modules while it runs, for its dataclasses."""
    loader = importlib.machinery.SourceFileLoader("bench_fanout", str(REPO / "bench" / "fanout"))
    spec = importlib.util.spec_from_loader("bench_fanout", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_fanout", module)
    loader.exec_module(module)
    return module


def test_a_machine_without_openssh_or_ansible_is_told_what_to_install(monkeypatch, capsys):
    fanout = _fanout(monkeypatch)
    monkeypatch.setattr(fanout.shutil, "which", lambda tool: None if tool in ("sshd", "ansible-playbook") else tool)
    monkeypatch.setattr(fanout.os, "access", lambda path, mode: False)
    monkeypatch.setattr(sys, "argv", ["bench/fanout", "--hosts", "2"])
    with pytest.raises(SystemExit) as ended:
        fanout.main()
    said = str(ended.value.code)
    assert "sshd (Debian: apt-get install openssh-server)" in said
    assert "ansible-playbook (pip install -e '.[bench]', or leave Ansible out with --no-ansible)" in said
    assert fanout.missing_tools(ansible=False) == ["sshd (Debian: apt-get install openssh-server)"]
    monkeypatch.setattr(fanout.shutil, "which", lambda tool: None if tool in ("podman", "gcc") else tool)
    assert fanout.missing_tools(ansible=False, images=True) == [
        "podman (Debian: apt-get install podman)",
        "gcc (Debian: apt-get install gcc libc6-dev)",
    ]


@pytest.mark.sshd
def test_the_fanout_benchmark_runs_end_to_end_on_a_few_hosts():
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fanout"), "--hosts", "3", "--rounds", "1", "--no-ansible"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "releaser / raw ssh" in proc.stdout
    assert "releaser's controller:" in proc.stdout and "KB per added host" in proc.stdout
    assert "the full stage (2 hosts), median: start-up, connections, pre-flight" in proc.stdout
