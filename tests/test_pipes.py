"""Readers that go away: a pipe closed mid-run (`| head`, `| grep -m`), a closed descriptor, a
terminal that hangs up. None of them stops a promotion or a rollback, changes an exit code, or
makes a command that only reads say more than its answer."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import signal
import subprocess
import sys
import termios

import pytest

from releaser.streams import Guarded
from tests.harness.project import HOSTS, break_host, live, wait_for_event


def _pipe_stream():
    """A text stream on a real pipe, and the pipe's read end."""
    read_end, write_end = os.pipe()
    return os.fdopen(write_end, "w", encoding="utf-8"), read_end


def test_a_stream_whose_reader_went_away_drops_what_it_is_given():
    stream, read_end = _pipe_stream()
    guarded = Guarded(stream)
    guarded.write("seen\n")
    guarded.flush()
    assert os.read(read_end, 100) == b"seen\n"
    os.close(read_end)
    guarded.write("into a closed pipe\n")
    guarded.flush()  # EPIPE: dropped, and the descriptor now leads nowhere
    assert guarded.gone and not guarded.isatty()
    assert guarded.write("and more\n") == len("and more\n")
    stream.write("what the stream still held\n")
    stream.close()  # the buffered rest flushes into /dev/null instead of raising


def test_other_errors_and_bytes_still_raise():
    class Full:
        def write(self, _text):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as raised:
        Guarded(Full()).write("x")  # type: ignore[arg-type]  # a stand-in stream
    assert raised.value.errno == errno.ENOSPC
    stream, read_end = _pipe_stream()
    with pytest.raises(TypeError):  # as a text stream: how click tells text streams from binary ones
        Guarded(stream).write(b"x")  # type: ignore[arg-type]  # bytes on purpose
    stream.close()
    os.close(read_end)


def _releaser(project, *args: str, failpoint: str | None = None, **popen) -> subprocess.Popen:
    """releaser in a process of its own; with `failpoint` (KIND:STOP) it stops itself at that
    journal step, for the test to take its reader away there."""
    env = {**project.environ(), **({"RELEASER_FAILPOINT": failpoint} if failpoint else {})}
    env.pop("PYTHONUNBUFFERED", None)  # as a user's shell has it: unbuffered, a cut-off write would pass unseen
    return subprocess.Popen([sys.executable, "-m", "releaser.cli", "-C", str(project.dir), *args], env=env, **popen)


def _held(proc: subprocess.Popen) -> None:
    """Wait until the process stopped itself at its failpoint."""
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"it ended instead (status {status:#x})"


def _drained(fd: int) -> str:
    """What the pipe or terminal holds now, without waiting for more."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # nothing more now (EAGAIN), or a terminal whose other end is closed (EIO)
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _events(project, release: str | None = None) -> list[dict]:
    args = ("--release", release) if release else ()
    return json.loads(project.cli("history", "--json", *args, check=True).stdout)["events"]


def _kinds(project, release: str | None = None) -> list[str]:
    return [e["kind"] for e in _events(project, release)]


@pytest.fixture
def on_1_0_0(project):
    """The project with dev on 1.0.0, and 1.1.0 (good) and 1.3.0 (sick on dev-1) registered."""
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    project.register("1.1.0")
    project.register("1.3.0", fail_on=("dev-1",))
    return project


def _promote_into_a_pipe_closed_at(project, version: str, step: str) -> int:
    """`releaser promote VERSION 2>&1 | grep -m2 ...`: the reader reads, then goes away while the
    promotion is held at the journal step `step`; the promotion's exit code."""
    read_end, write_end = os.pipe()
    proc = _releaser(project, "promote", version, failpoint=f"{step}:STOP", stdout=write_end, stderr=write_end)
    os.close(write_end)
    _held(proc)
    assert f"promoting {version} on dev" in _drained(read_end)  # a reader was there, and read
    os.close(read_end)  # from here on every line meets a closed pipe
    proc.send_signal(signal.SIGCONT)
    return proc.wait(timeout=120)


def test_a_promotion_whose_pipe_closes_mid_stage_passes_it(on_1_0_0):
    project = on_1_0_0
    assert _promote_into_a_pipe_closed_at(project, "1.1.0", "bake.started") == 0
    assert _kinds(project, "1.1.0")[-1] == "stage.passed"
    assert project.current("dev-1") == "1.1.0"


def test_a_rollback_whose_pipe_closes_midway_finishes(on_1_0_0):
    project = on_1_0_0
    assert _promote_into_a_pipe_closed_at(project, "1.3.0", "rollback.started") == 1  # failed and rolled back
    kinds = _kinds(project, "1.3.0")
    assert kinds.index("rollback.started") < kinds.index("rollback.done") < kinds.index("incident")
    assert project.current("dev-1") == "1.0.0"
    status = project.status()
    assert status["environments"]["dev"]["interrupted"] == [] and status["environments"]["dev"]["lock"] is None
    assert next(r for r in status["releases"] if r["version"] == "1.3.0")["status"] == "rolled_back"


def test_a_promotion_with_stdout_and_stderr_closed_passes(on_1_0_0):
    project = on_1_0_0

    def close_both() -> None:  # `releaser promote 1.1.0 >&- 2>&-`
        os.close(1)
        os.close(2)

    proc = _releaser(project, "promote", "1.1.0", preexec_fn=close_both)
    assert proc.wait(timeout=120) == 0
    assert project.current("dev-1") == "1.1.0"


def _take_terminal() -> None:
    """In the child, after setsid: the terminal on its stdin becomes its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_a_terminal_that_hangs_up_mid_promotion_does_not_stop_it(on_1_0_0):
    project = on_1_0_0
    terminal, its_end = pty.openpty()
    proc = _releaser(
        project,
        "promote",
        "1.1.0",
        failpoint="bake.started:STOP",
        stdin=its_end,
        stdout=its_end,
        stderr=its_end,
        start_new_session=True,
        preexec_fn=_take_terminal,
    )
    os.close(its_end)
    _held(proc)
    assert "promoting 1.1.0 on dev" in _drained(terminal)
    os.close(terminal)  # the terminal window closes: the kernel hangs it up and sends SIGHUP
    proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=120) == 0
    events = _events(project)
    hangup = next(e for e in events if e["kind"] == "terminal.hangup")
    assert "promote 1.1.0" in hangup["message"] and hangup["data"]["pid"] == proc.pid
    assert [e["kind"] for e in events if e["release"] == "1.1.0"][-1] == "stage.passed"
    assert project.current("dev-1") == "1.1.0"


def test_a_hangup_mid_rollback_lets_it_finish_and_output_to_a_pipe_goes_on(on_1_0_0):
    project = on_1_0_0
    proc = _releaser(
        project,
        "promote",
        "1.3.0",
        failpoint="rollback.started:HUP",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert "rolled back 1 host(s) of dev" in stderr  # a hangup is not a closed pipe: the pipe still reads
    kinds = _kinds(project)
    assert kinds.index("rollback.started") < kinds.index("terminal.hangup") < kinds.index("rollback.done")
    assert project.current("dev-1") == "1.0.0"


def test_a_hangup_does_not_stop_watch(project):
    live(project, "1.0.0", "1.1.0")
    watcher = project.spawn("watch", "--interval", "200ms")
    try:
        wait_for_event(project, "window.watching")
        watcher.send_signal(signal.SIGHUP)
        wait_for_event(project, "terminal.hangup")  # journaled at its next look: it still looks
        break_host(project, HOSTS["prod"][4])
        wait_for_event(project, "incident", timeout=60)  # and rolls back what fails after the hangup
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0  # stopped by SIGTERM: a normal stop
    assert set(project.env_versions("prod").values()) == {"1.0.0"}


READS = (
    ["history"],
    ["status"],
    ["status", "--json"],
    ["release", "list"],
    ["release", "show", "1.0.0"],
    ["validate"],
    ["report", "1.0.0", "--format", "md"],
    ["completion", "bash"],
)


def test_reads_into_a_closed_pipe_exit_0_and_say_nothing_more(on_1_0_0):
    project = on_1_0_0
    for args in READS:
        read = project.cli(*args, check=True)  # what it says on stderr with a reader: the same without
        read_end, write_end = os.pipe()
        os.close(read_end)  # `| head -0`: nobody reads, the first line meets a closed pipe
        proc = _releaser(project, *args, stdout=write_end, stderr=subprocess.PIPE, text=True)
        os.close(write_end)
        _, stderr = proc.communicate(timeout=60)
        assert (proc.returncode, stderr) == (0, read.stderr), args


def test_history_into_head_1_exits_0(on_1_0_0):
    """`releaser history --json | head -1`: head reads one line of more than the pipe holds, and goes."""
    project = on_1_0_0
    project.cli("promote", "1.1.0", check=True)
    read_end, write_end = os.pipe()
    holds = fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, 4096)  # the writer blocks until head has gone
    assert len(project.cli("history", "--json", check=True).stdout) > holds + 2 * 1024
    proc = _releaser(project, "history", "--json", stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert os.read(read_end, 2) == b"{\n"
    os.close(read_end)
    _, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stderr) == (0, "")


def test_a_read_with_stdout_closed_exits_0(on_1_0_0):
    proc = _releaser(on_1_0_0, "status", stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(1))
    _, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stderr) == (0, "")
