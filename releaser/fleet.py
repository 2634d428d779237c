"""Bounded parallel fan-out over hosts, with one session per host kept for a whole stage."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable

from .fanout import fan_out
from .model import Environment, Host
from .record import Record
from .transport.base import Notify, OutputFn, Session, Transport, tail

WHY_LINES = 3


class HostResult(Record):
    """What one phase did on one host."""

    host: str
    ok: bool
    exit_code: int | None
    duration: float
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    started: bool = False  # the script was sent: the host may have acted on it

    def why(self) -> str:
        """The script's own exit status and the tail of what it said last (its stderr, else
        its stdout): up to WHY_LINES lines."""
        if self.error:
            return self.error
        said = [line.strip() for line in (self.stderr.strip() or self.stdout.strip()).splitlines() if line.strip()]
        said = [line for line in said if not line.startswith("RELEASER_")]  # releaser's own markers
        shown = " | ".join(said[-WHY_LINES:])
        return f"exit {self.exit_code}: {shown}" if shown else f"exit {self.exit_code}"

    def to_dict(self) -> dict:
        return {
            "host": self.host,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "duration": round(self.duration, 3),
            "stdout_tail": tail(self.stdout, 500),
            "stderr_tail": tail(self.stderr, 500),
            "error": self.error,
            "started": self.started,
        }


Upload = tuple[str | bytes, str]  # (a local path, or private data (mode 0600), remote path)
ProgressFn = Callable[[str, "dict[str, HostResult]", float], None]  # phase, results, seconds
TickFn = Callable[[str, int, int, int, float], None]  # phase, done, failed, total, seconds: per host
SlowFn = Callable[[Host, Session, float], None]  # a host whose phase still runs, its session, seconds


def default_transport(environment: Environment, notify: Notify | None = None) -> Transport:
    """The transport the environment names (ssh or local), for a fleet given no other."""
    from .transport import transport_for

    return transport_for(environment, notify)


class Fleet:
    """The hosts of one environment during one stage: sessions opened once, reused per phase."""

    def __init__(
        self,
        environment: Environment,
        transport: Transport,
        progress: ProgressFn | None = None,
        tick: TickFn | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ):
        self.environment = environment
        self.transport = transport
        self.progress = progress
        self.tick = tick
        self.stopping = stopping  # once true, no host starts new work (hosts at work finish)
        self._sessions: dict[str, Session] = {}

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _session(self, host: Host) -> Session:
        session = self._sessions.get(host.name)
        if session is None:
            session = self.transport.connect(host)
            self._sessions[host.name] = session
        return session

    def open(self, hosts: Iterable[Host]) -> dict[str, BaseException]:
        """Open the sessions of `hosts` at once (kept for the stage); what kept each host out."""
        return {
            o.item.name: o.error
            for o in fan_out(list(hosts), self._session, self.environment.parallel)
            if o.error is not None
        }

    def run(
        self,
        phase: str,
        hosts: Iterable[Host],
        script_for: Callable[[Host], str],
        uploads_for: Callable[[Host], list[Upload]] | None = None,
        timeout: float | None = None,
        quiet: bool = False,
        stoppable: bool = False,
        on_slow: SlowFn | None = None,
        own: bool = False,
    ) -> dict[str, HostResult]:
        """One script per host (after its uploads), at most `parallel` hosts at once.
        `quiet` phases (health checks while baking) report no progress; in `stoppable` ones
        (a deploy's), hosts not yet started stay untouched once the fleet is stopping. `own`
        scripts are releaser's, leaving no process on their output: they go down the session's
        kept shell (`Session.run_in_shell`).
        `on_slow` is called for each host whose script still runs after the environment's
        `slow_after`, and again each time that doubles."""

        timeout = timeout or self.environment.command_timeout
        phase_started = time.monotonic()
        hosts = list(hosts)
        counts = {"done": 0, "failed": 0}
        counting = threading.Lock()
        running: dict[str, tuple[Host, Session, float]] = {}

        def one(host: Host) -> HostResult:
            started, sent = time.monotonic(), False
            try:
                if stoppable and self.stopping():
                    raise InterruptedError("not started: the run is stopping")
                session = self._session(host)
                for local, remote_path in uploads_for(host) if uploads_for else []:
                    if isinstance(local, bytes):
                        session.put_private(local, remote_path)
                    else:
                        session.put(local, remote_path)
                script = script_for(host)
                sent = True
                with counting:
                    running[host.name] = (host, session, time.monotonic())
                try:
                    result = (session.run_in_shell if own else session.run)(script, timeout)
                finally:
                    with counting:
                        running.pop(host.name, None)
            except Exception as exc:
                self._sessions.pop(host.name, None)
                # a transport's own errors are sentences; anything else says what it is
                said = str(exc) if isinstance(exc, ConnectionError) else f"{type(exc).__name__}: {exc}"
                outcome = HostResult(host.name, False, None, time.monotonic() - started, error=said, started=sent)
            else:
                outcome = HostResult(
                    host.name, result.ok, result.exit_code, result.duration, result.stdout, result.stderr, started=True
                )
                if result.timed_out:
                    outcome.error = f"timed out after {timeout:g}s"
            if self.tick and not quiet:
                with counting:
                    counts["done"] += 1
                    counts["failed"] += not outcome.ok
                    self.tick(phase, counts["done"], counts["failed"], len(hosts), time.monotonic() - phase_started)
            return outcome

        finished = threading.Event()
        watchdog = None
        if on_slow is not None:
            watchdog = threading.Thread(
                target=self._watch_slow, args=(running, counting, finished, on_slow), name="slow-phases", daemon=True
            )
            watchdog.start()
        try:
            outcomes = fan_out(hosts, one, self.environment.parallel)
        finally:
            finished.set()
            if watchdog is not None:
                watchdog.join()
        results = {o.item.name: o.value for o in outcomes if o.value is not None}
        if self.progress and results and not quiet:
            self.progress(phase, results, time.monotonic() - phase_started)
        return results

    def stream(self, host: Host, script: str, on_output: OutputFn) -> int:
        """One script on one host with no time limit, its output passed on as it comes, until it
        ends or the caller stops it (`Session.stream`); its exit status."""
        return self._session(host).stream(script, on_output)

    def _watch_slow(self, running: dict, lock: threading.Lock, finished: threading.Event, on_slow: SlowFn) -> None:
        """Look into hosts whose script runs past slow_after, 2x, 4x... of it (each host once per
        threshold); a look that fails is not worth more than the phase it looks at."""
        threshold = self.environment.slow_after
        seen: dict[str, float] = {}
        while not finished.wait(min(1.0, threshold / 4)):
            now = time.monotonic()
            with lock:
                slow = [(h, s, now - t) for h, s, t in running.values() if now - t >= seen.get(h.name, threshold)]
            for host, session, seconds in slow:
                seen[host.name] = max(seen.get(host.name, threshold), seconds) * 2
                with contextlib.suppress(Exception):
                    on_slow(host, session, seconds)

    def close(self) -> None:
        for session in self._sessions.values():
            with contextlib.suppress(Exception):
                session.close()
        self._sessions.clear()
