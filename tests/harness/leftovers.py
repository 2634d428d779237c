"""Processes a test run left behind: every process the run started must be gone when it ends.

A process counts as the run's when it descends from the pytest process, or when its command
line or working directory lies in the run's temporary directory (a daemon such as nginx or
PostgreSQL leaves its parent behind, not its prefix). Another run's processes, under another
temporary directory, are never seen."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def _processes() -> dict[int, tuple[int, str, str, str]]:
    """pid -> (parent pid, state, command line, working directory) of every live process we can read."""
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                cwd = ""
        except OSError:
            continue  # gone meanwhile, or another user's
        found[int(entry.name)] = (int(stat[1]), stat[0], command, cwd)
    return found


def leftovers(root_pid: int, tmp: Path) -> dict[int, str]:
    """pid -> command line of the live processes that belong to the run (not `root_pid` itself)."""
    processes = _processes()
    inside = re.compile(re.escape(str(tmp)) + r"(?![^/\s])")
    ours = set()
    for pid, (_, state, command, cwd) in processes.items():
        if state != "Z" and (inside.search(command) or inside.match(cwd)):
            ours.add(pid)
    for pid in processes:
        ancestor, seen = processes[pid][0], set()
        while ancestor > 1 and ancestor in processes and ancestor not in seen:
            if ancestor == root_pid:
                if processes[pid][1] != "Z":
                    ours.add(pid)
                break
            seen.add(ancestor)
            ancestor = processes[ancestor][0]
    ours -= {root_pid, os.getpid()}
    return {pid: processes[pid][2] or f"[{processes[pid][3]}]" for pid in sorted(ours)}


def settle(root_pid: int, tmp: Path, grace: float = 5.0) -> dict[int, str]:
    """The run's processes still alive after `grace` seconds for the ones that are exiting."""
    deadline = time.monotonic() + grace
    while (left := leftovers(root_pid, tmp)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def end(pids: list[int]) -> None:
    """Stop what was left: TERM, then KILL what still runs a few seconds later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while any(PROC.joinpath(str(pid)).exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
