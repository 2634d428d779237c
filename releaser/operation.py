"""What every command that acts on environments works with (the configuration, the state and
its journal, how hosts are reached, signals), and the one way to take an environment in hand:
its lock, a fleet of its hosts with sessions opened once, and a deployer over them.

Promotion (pipeline.py), rollback (rollback.py) and recovery (recovery.py) are operations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Self

from .deploy import Deployer
from .errors import BusyError, NeedsHuman, UsageError
from .events import Event
from .fleet import Fleet, HostResult, TickFn, default_transport
from .interrupts import Interrupts
from .journal import Journal
from .locks import EnvironmentLock
from .model import Config, Environment, Release, RollbackRun, StageRun
from .processes import owner_alive
from .record import Record
from .store import Store


class Held(Record):
    """An environment in hand: its lock, and a deployer over a fleet of its hosts."""

    env: Environment
    deployer: Deployer
    lock: EnvironmentLock


class Operation:
    def __init__(
        self,
        config: Config,
        store: Store,
        journal: Journal,
        transports: Callable = default_transport,
        tick: TickFn | None = None,
        interrupts: Interrupts | None = None,
    ):
        self.config, self.store, self.journal = config, store, journal
        self.transports = transports  # (environment, notify) -> Transport
        self.tick = tick
        self.interrupts = interrupts or Interrupts()

    @classmethod
    def like(cls, other: Operation) -> Self:
        """This kind of operation, working with what `other` works with."""
        return cls(other.config, other.store, other.journal, other.transports, other.tick, other.interrupts)

    # -- taking an environment in hand --

    @contextlib.contextmanager
    def hold(self, env: Environment, command: str, armed: bool = False) -> Iterator[Held]:
        """Lock `env` for `command` (exit 3 when another holds it), open a fleet of its hosts and
        a deployer over them; `armed`: a signal from here on is read at safe points (interrupts.py).
        The app's secrets are read first: a change may prepare a release on a host, and one
        not set ends the command before anything is locked or journaled (exit 2)."""
        if env.secrets:
            from .appsecrets import env_file

            env_file(env)
        with contextlib.ExitStack() as stack:
            if armed:
                stack.enter_context(self.interrupts.armed())
            lock = stack.enter_context(self.lock(env.name, command))
            fleet = stack.enter_context(self._fleet(env))
            yield Held(env, self._deployer(env, fleet), lock)

    @contextlib.contextmanager
    def look(self, env: Environment) -> Iterator[Deployer]:
        """A deployer over the hosts of `env` that only asks them (no lock: it changes nothing)."""
        with self._fleet(env) as fleet:
            yield self._deployer(env, fleet)

    def lock(self, environment: str, command: str) -> EnvironmentLock:
        return EnvironmentLock(self.store, self.journal, environment, command)

    def _deployer(self, env: Environment, fleet: Fleet) -> Deployer:
        routes = None
        if env.router is not None:
            from .router.keeper import RouteKeeper

            routes = RouteKeeper(env, self.store, self.journal, fleet)
        playbook = self.config.playbooks[env.playbook]
        return Deployer(env, playbook, self.store, self.journal, fleet, routes, self.config.registries)

    def _fleet(self, env: Environment) -> Fleet:
        def notify(kind: str, message: str, data: dict) -> None:
            self.journal.record(Event(kind), message, environment=env.name, host=data.get("host"), data=data)

        return Fleet(
            env,
            self.transports(env, notify),
            progress=self._phase_progress(env),
            tick=self.tick,
            stopping=lambda: self.interrupts.requested,
        )

    def _phase_progress(self, env: Environment) -> Callable[[str, dict[str, HostResult], float], None]:
        def report(phase: str, results: dict[str, HostResult], seconds: float) -> None:
            ok = sum(1 for r in results.values() if r.ok)
            failed = [name for name, r in results.items() if not r.ok]
            text = f"  {phase}: {ok}/{len(results)} hosts ok in {seconds:.2f}s"
            if failed:
                text += f" (failed: {', '.join(sorted(failed)[:10])}{'…' if len(failed) > 10 else ''})"
            self.journal.note(text, environment=env.name)

        return report

    # -- what every operation refuses --

    def release(self, version: str) -> Release:
        release = self.store.get_release(version)
        if release is None:
            raise UsageError(
                f"unknown release {version!r}: register it with `releaser release create {version} --artifact FILE`"
            )
        return release

    def environment(self, name: str) -> Environment:
        env = self.config.environments.get(name)
        if env is None:
            raise UsageError(f"unknown environment {name!r} (known: {', '.join(self.config.environments)})")
        return env

    def refuse_open_runs(self, env: Environment) -> None:
        for run in self.store.stage_runs():
            if run.environment == env.name and run.status.open:
                raise NeedsHuman(
                    f"{run.stage} of {run.release} on {env.name} is unfinished (run {run.id}, {run.status}); "
                    "run `releaser resume` to finish or roll it back first"
                )
        for rollback in self.store.rollbacks(env.name):
            if rollback.status.open:
                raise NeedsHuman(
                    f"rollback {rollback.id} of {env.name} is unfinished "
                    f"({', '.join(sorted(rollback.left)) or 'interrupted'}); "
                    "run `releaser resume` to finish it first"
                )

    @staticmethod
    def refuse_live_owner(item: StageRun | RollbackRun) -> None:
        if owner_alive(item.pid, item.hostname, item.lease_until):
            what = f"run {item.id}" if isinstance(item, StageRun) else f"rollback {item.id}"
            raise BusyError(
                f"{what} on {item.environment} is still being worked on by pid {item.pid} on {item.hostname}; "
                "resume never takes over a live run: wait for it, or stop that process first"
            )
