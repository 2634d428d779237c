"""Apply a version change to hosts: prepare, then switch (restart, verify), and ask hosts what
they really run.

Each host's phase runs detached on the host (`playbook.detached`) and the outcome is read from
the lines it appended to the host's own record, so a dropped connection loses no outcome: a
host whose phase cannot be read back is `unknown` and the store marks it in doubt until it is
asked again. The store hears of every phase before it starts (deployment `preparing` /
`switching`, journal `*.started`) and of its outcome after.

With a router in front of the environment, every host is drained before its switch (restart and
verify) and put back in rotation after, on the side of what it then runs; hosts that are every
host in rotation switch in two halves, so that some host always serves.
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING

from . import playbook as pb
from .appsecrets import REGISTRY_AUTH, env_file, env_file_path, registry_auth
from .containers import registry_certs
from .errors import NeedsHuman
from .events import Event
from .fleet import Fleet, HostResult, Upload
from .hostrecord import HostView, PhaseOutcome, outcome_of, parse_view, steps_in
from .journal import Journal
from .model import DeployAction, Deployment, DeploymentStatus, Environment, Host, Playbook, RegistrySpec, Release
from .record import Record
from .store import Store

if TYPE_CHECKING:
    from .router.keeper import RouteKeeper


class ChangeOutcome(Record):
    """Per host: ok, or why not. `unknown` hosts (also in `failed`) could not say what they did."""

    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)


def session_timeout(command_timeout: float) -> float:
    """How long the connection waits for a detached phase: it may first wait for an earlier
    phase's lock on the host, then run for up to the command timeout."""
    return 2 * command_timeout + 15


class Deployer:
    def __init__(
        self,
        environment: Environment,
        playbook: Playbook,
        store: Store,
        journal: Journal,
        fleet: Fleet,
        routes: RouteKeeper | None = None,
        registries: dict[str, RegistrySpec] | None = None,
    ):
        self.env, self.playbook = environment, playbook
        self.store, self.journal, self.fleet = store, journal, fleet
        self.routes = routes
        self.registries = registries or {}

    # -- what the store believes --

    def current_versions(self) -> dict[str, str | None]:
        states = self.store.host_states(self.env.name)
        return {h.name: states[h.name].version if h.name in states else None for h in self.env.hosts}

    # -- deploy --

    def deploy(self, release: Release, hosts: list[Host], run_id: int | None, stage: str | None) -> ChangeOutcome:
        """Prepare on every host, then switch the prepared ones (the switch runs restart and verify)."""
        outcome = ChangeOutcome()
        current = self.current_versions()
        deps = self._deployments(
            hosts,
            DeployAction.DEPLOY,
            current,
            {h.name: release.version for h in hosts},
            run_id,
            DeploymentStatus.PREPARING,
        )
        tag = {"environment": self.env.name, "release": release.version, "stage": stage}
        self.journal.record(
            Event.PREPARE_STARTED,
            f"  prepare {release.version} on {len(hosts)} host(s)",
            data={"hosts": [h.name for h in hosts], "run": run_id},
            **tag,
        )
        prepared = self.prepare(release, hosts, {n: d.op for n, d in deps.items()}, f"stage-{run_id}")
        with self.store.transaction():
            for name, result in prepared.items():
                if not result.ok:
                    why = f"prepare: {result.why()}"
                    outcome.failed[name] = why
                    self.store.update_deployment(deps[name].id, DeploymentStatus.FAILED, why)
                    self.journal.record(Event.HOST_FAILED, f"{name}: {why}", host=name, data=result.to_dict(), **tag)
            ready = [h for h in hosts if prepared[h.name].ok]
            self.journal.record(
                Event.PREPARE_FINISHED,
                f"  prepared {release.version} on {len(ready)}/{len(hosts)} host(s)",
                data={"ok": [h.name for h in ready], "failed": sorted(outcome.failed)},
                **tag,
            )
        switched = self._switch(ready, deps, DeployAction.DEPLOY, f"stage-{run_id}", stage, current)
        outcome.ok = switched.ok
        outcome.failed.update(switched.failed)
        outcome.unknown = switched.unknown
        return outcome

    def prepare(
        self, release: Release, hosts: list[Host], ops: dict[str, str], run: str, stoppable: bool = True
    ) -> dict[str, HostResult]:
        """Get the artifact onto each host (pushed by the transport, or pulled by the host
        from the release's URL), check its sha256 there, unpack; or have each host pull the
        release's image by its digest and create its container."""
        pull = self.env.artifacts == "pull" or release.image is not None
        image = release.image
        private = env_file(self.env) if self.env.secrets else None
        registry = self._registry(image) if image else None
        auth = registry_auth(registry) if registry else None

        def uploads(host: Host) -> list[Upload]:
            sent: list[Upload] = [] if pull else [(release.artifact, pb.artifact_path(host, release.version))]
            root = host.root.rstrip("/")
            if private is not None:
                sent.append((private, env_file_path(host)))
            if auth is not None:
                sent.append((auth, f"{root}/{REGISTRY_AUTH}"))
            if registry is not None and registry.ca_file and self.env.runtime == "podman":
                sent.append((registry.ca_file, f"{root}/{registry_certs(registry)}"))
            return sent

        def script(host: Host) -> str:
            op = ops[host.name] + "p"
            if image is not None and registry is not None:
                body = pb.image_prepare_script(self.playbook, host, release.version, image, op, run, self.env, registry)
            else:
                body = pb.prepare_script(
                    self.playbook,
                    host,
                    release.version,
                    release.sha256,
                    op,
                    run,
                    release.url if pull else None,
                    self.env,
                )
            return pb.detached(body, host, op, run, "prepare", release.version, self.env.command_timeout)

        return self.fleet.run(
            "prepare",
            hosts,
            script,
            uploads,
            timeout=session_timeout(self.env.command_timeout),
            stoppable=stoppable,
            on_slow=self._look_into("prepare"),
            own=True,
        )

    def _registry(self, image: str) -> RegistrySpec:
        address = image.split("/", 1)[0]
        return self.registries.get(address) or RegistrySpec(address)

    def _look_into(self, phase: str):
        """For a phase still running on a host past `slow_after`: say which hook it is in, how
        much it wrote, what it waits for, and what to do if it should have returned."""

        def look(host: Host, session, seconds: float) -> None:
            stalls = pb.parse_stalls(session.run(pb.stall_script(host), 15).stdout)
            limit = f"it is stopped at command_timeout ({self.env.command_timeout:g}s)"
            runs = self.playbook.container or self.playbook.service
            if stalls and all(stall.hook in pb.OWN_STEPS for stall in stalls):  # releaser's own steps: no hook
                message = "; ".join(f"{host.name}: {pb.OWN_STEPS[s.hook]} for {s.seconds}s" for s in stalls)
                if runs is not None and any(s.hook != "pull" for s in stalls):
                    message += f"; it fails once ready_timeout ({runs.ready_timeout:g}s) passes"
                else:
                    message += f"; {limit}"
            elif stalls:
                message = "; ".join(stall.describe(host.name) for stall in stalls) + f"; {limit}"
                if not all(stall.polling for stall in stalls):  # a loop polling for readiness is not hung
                    message += f". If it should have returned: {pb.HUNG_FIX}"
            else:
                message = (
                    f"{host.name}: {phase} still running after {seconds:.0f}s (uploading, or waiting for "
                    f"another phase on the host); {limit}"
                )
            self.journal.note(message, environment=self.env.name, host=host.name)

        return look

    def _deployments(
        self,
        hosts: list[Host],
        action: DeployAction,
        current: dict[str, str | None],
        targets: dict[str, str],
        run_id: int | None,
        status: DeploymentStatus,
    ) -> dict[str, Deployment]:
        return {
            d.host: d
            for d in self.store.add_deployments(
                [
                    Deployment(
                        0,  # the store gives it its id
                        run_id,
                        self.env.name,
                        h.name,
                        action,
                        current[h.name],
                        targets[h.name],
                        status,
                        op=pb.new_op(),
                    )
                    for h in hosts
                ]
            )
        }

    # -- the switch, for deploy and rollback alike --

    def _switch(
        self,
        hosts: list[Host],
        deps: dict[str, Deployment],
        action: DeployAction,
        run: str,
        stage: str | None,
        current: dict[str, str | None],
    ) -> ChangeOutcome:
        outcome = ChangeOutcome()
        if not hosts:
            return outcome
        targets = {h.name: deps[h.name].to_version for h in hosts}
        versions = sorted(set(targets.values()))
        tag = {"environment": self.env.name, "stage": stage, "release": versions[0] if len(versions) == 1 else None}
        batches = self.routes.batches([h.name for h in hosts]) if self.routes else [[h.name for h in hosts]]
        self._drain(batches[0], action)  # a deploy whose drain is refused has touched no host
        with self.store.transaction():
            for host in hosts:
                self.store.update_deployment(deps[host.name].id, DeploymentStatus.SWITCHING)
            self.journal.record(
                Event.SWITCH_STARTED,
                f"  {action}: switching {len(hosts)} host(s) to {', '.join(versions)}",
                data={"action": action, "targets": targets, "run": run},
                **tag,
            )

        def script(host: Host) -> str:
            dep = deps[host.name]
            body = pb.switch_script(
                self.playbook,
                host,
                dep.to_version,
                action,
                dep.op,
                run,
                _protect(current[host.name]),
                self.env,
            )
            return pb.detached(body, host, dep.op, run, action, dep.to_version, self.env.command_timeout)

        phase = "switch" if action is DeployAction.DEPLOY else str(action)
        for number, batch in enumerate(batches):
            if number:
                self._drain(batch, action)
            group = [h for h in hosts if h.name in batch]
            results = self.fleet.run(
                phase,
                group,
                script,
                timeout=session_timeout(self.env.command_timeout),
                stoppable=action is DeployAction.DEPLOY,
                on_slow=self._look_into(phase),
                own=True,
            )
            with self.store.transaction():
                for host in group:
                    dep, result = deps[host.name], results[host.name]
                    status, why = self._settle(dep, result, outcome_of(steps_in(result.stdout), dep.op))
                    if status is DeploymentStatus.SWITCHED:
                        outcome.ok.append(host.name)
                    else:
                        outcome.failed[host.name] = why
                        if status is DeploymentStatus.UNKNOWN:
                            outcome.unknown[host.name] = why
                        kind = Event.HOST_ROLLBACK_FAILED if action is DeployAction.ROLLBACK else Event.HOST_FAILED
                        self.journal.record(
                            kind,
                            f"{host.name}: {why}",
                            host=host.name,
                            data=result.to_dict(),
                            **{**tag, "release": dep.to_version},
                        )
            self.back_in_rotation(batch, set(outcome.failed), action)
        with self.store.transaction():
            self.journal.record(
                Event.SWITCH_FINISHED,
                f"  {action}: {len(outcome.ok)}/{len(hosts)} host(s) switched"
                + (
                    f"; {len(outcome.unknown)} unknown: {', '.join(sorted(outcome.unknown))}" if outcome.unknown else ""
                ),
                data={
                    "action": action,
                    "ok": outcome.ok,
                    "failed": outcome.failed,
                    "unknown": sorted(outcome.unknown),
                    "run": run,
                },
                **tag,
            )
        return outcome

    def _drain(self, hosts: list[str], action: DeployAction) -> None:
        """Out of rotation before the switch. A deploy stops on a refused route; a rollback goes on
        without (the router keeps its last route, journaled): its hosts matter more."""
        from .router.keeper import RouteRefused

        if self.routes is None:
            return
        try:
            self.routes.drain(hosts)
        except RouteRefused:
            if action is DeployAction.DEPLOY:
                raise

    def back_in_rotation(self, hosts: list[str], failed: set[str], action: DeployAction) -> None:
        """Switched hosts back in rotation, on the side of what they now run; failed ones stay out."""
        from .router.keeper import RouteRefused

        if self.routes is None:
            return
        try:
            self.routes.settle(self.current_versions(), hosts, failed)
        except RouteRefused:
            if action is DeployAction.DEPLOY:
                raise

    def _settle(self, dep: Deployment, result: HostResult, phase: PhaseOutcome | None) -> tuple[DeploymentStatus, str]:
        """Record one host's switch outcome (deployment and host state); (status, why)."""
        name, target = dep.host, dep.to_version
        if phase is None:
            if result.started:
                why = f"no answer, outcome unknown until the host is asked again: {result.why()}"
                self.store.update_deployment(dep.id, DeploymentStatus.UNKNOWN, why)
                self.store.doubt_host(self.env.name, name, f"its switch to {target} may have happened: {result.why()}")
                return DeploymentStatus.UNKNOWN, why
            why = f"switch: {result.why()}"
            self.store.update_deployment(dep.id, DeploymentStatus.FAILED, why)
            return DeploymentStatus.FAILED, why
        if phase.switched:
            doubt = "" if phase.ok else f"switched to {target} but the switch did not finish cleanly"
            self.store.set_host_state(self.env.name, name, target, phase.previous, doubt)
        if phase.ok:
            self.store.update_deployment(dep.id, DeploymentStatus.SWITCHED)
            return DeploymentStatus.SWITCHED, ""
        if not phase.finished:
            why = f"the host did not finish its switch while connected: {result.why()}"
            self.store.update_deployment(dep.id, DeploymentStatus.UNKNOWN, why)
            self.store.doubt_host(self.env.name, name, why)
            return DeploymentStatus.UNKNOWN, why
        step = phase.failed_step or "switch"
        why = f"{step.split(' ')[0]}: {result.why()}"
        self.store.update_deployment(
            dep.id, DeploymentStatus.SWITCHED_BROKEN if phase.switched else DeploymentStatus.FAILED, why
        )
        return DeploymentStatus.FAILED, why

    def switch_back(
        self,
        targets: dict[str, str],
        run_id: int | None,
        releases: dict[str, Release],
        stage: str | None,
        run: str,
        action: DeployAction = DeployAction.ROLLBACK,
    ) -> ChangeOutcome:
        """Switch each host to its target with the same switch code path as a deploy (a rollback,
        or a redeploy onto what the host should run). A target no longer unpacked on a host
        (cleaned up, or a new host) is prepared first from its registered artifact, then switched."""
        if not targets:
            return ChangeOutcome()
        current = self.current_versions()
        hosts = [h for h in self.env.hosts if h.name in targets]
        deps = self._deployments(hosts, action, current, targets, run_id, DeploymentStatus.SWITCHING)
        outcome = self._switch(hosts, deps, action, run, stage, current)
        missing = [h for h in hosts if h.name in outcome.failed and outcome.failed[h.name].startswith("not-prepared")]
        for version in sorted({targets[h.name] for h in missing}):
            release = releases.get(version)
            group = [h for h in missing if targets[h.name] == version]
            if release is None:
                continue
            again = self._deployments(group, action, current, targets, run_id, DeploymentStatus.PREPARING)
            prepared = self.prepare(release, group, {n: d.op for n, d in again.items()}, run, stoppable=False)
            ready = [h for h in group if prepared[h.name].ok]
            for host in group:
                if not prepared[host.name].ok:
                    outcome.failed[host.name] = f"prepare: {prepared[host.name].why()}"
                    self.store.update_deployment(
                        again[host.name].id, DeploymentStatus.FAILED, outcome.failed[host.name]
                    )
            second = self._switch(ready, again, action, run, stage, current)
            for name in second.ok:
                outcome.failed.pop(name, None)
                outcome.ok.append(name)
            outcome.failed.update(second.failed)
            outcome.unknown.update(second.unknown)
        return outcome

    # -- reality --

    def ask(self, hosts: list[Host] | None = None) -> dict[str, HostView]:
        """What each host really runs: `current`, its record and the version its app serves
        (waiting for a phase still running there), or the error that hid it."""
        hosts = list(hosts or self.env.hosts)
        results = self.fleet.run(
            "ask",
            hosts,
            lambda h: pb.probe_script(self.playbook, h, self.env.command_timeout, runtime=self.env.runtime),
            timeout=session_timeout(self.env.command_timeout),
            quiet=True,
            own=True,  # the version hook's output is read by the probe, never left on the connection
        )
        return {
            name: parse_view(name, r.stdout) if r.ok else HostView(name, error=r.why()) for name, r in results.items()
        }

    def ask_every_host(self, purpose: str) -> dict[str, HostView]:
        """`ask`, refusing (nothing changed) unless every host of the environment answered."""
        views = self.ask()
        unreachable = sorted(name for name, view in views.items() if not view.reachable)
        if unreachable:
            causes = "".join(f"\n  {name}: {views[name].error}" for name in unreachable)
            raise NeedsHuman(
                f"cannot ask {', '.join(unreachable)} of {self.env.name} what they run; nothing was "
                f"changed: {purpose} when every host of the environment can be reached:{causes}"
            )
        return views

    def reconcile(self, views: dict[str, HostView]) -> None:
        """Make the store agree with what the hosts say: settle switches whose outcome was
        unknown, correct what each host runs, mark the hosts that could not be asked."""
        states = self.store.host_states(self.env.name)
        with self.store.transaction():
            for dep in self.store.deployments(environment=self.env.name):
                view = views.get(dep.host)
                if not dep.status.open or view is None or not view.reachable or not dep.op:
                    continue
                phase = outcome_of(view.steps, dep.op)
                if phase is not None and phase.finished:
                    status = (
                        DeploymentStatus.SWITCHED
                        if phase.ok
                        else DeploymentStatus.SWITCHED_BROKEN
                        if phase.switched
                        else DeploymentStatus.FAILED
                    )
                else:
                    status = (
                        DeploymentStatus.FAILED
                    )  # it never began, or the host lost it: the host's `current` says the rest
                self.store.update_deployment(dep.id, status, f"settled from the host's record (was {dep.status})")
            for name, view in views.items():
                state = states.get(name)
                believed = state.version if state else None
                if not view.reachable:  # what the store believes stands; a rollback's plan weighs it
                    self.journal.record(
                        Event.RECONCILE_UNREACHABLE,
                        f"{name}: cannot ask what it runs: {view.error}",
                        environment=self.env.name,
                        host=name,
                        data={"error": view.error},
                    )
                    continue
                doubt = view.doubt
                previous = view.previous(view.current) if view.current else None
                previous = previous or (state.previous if state and state.version == view.current else None)
                if (believed, state.previous if state else None, state.doubt if state else "") == (
                    view.current,
                    previous,
                    doubt,
                ):
                    continue
                self.store.set_host_state(self.env.name, name, view.current, previous, doubt)
                if believed != view.current or doubt:
                    said = f"the store said {believed or 'nothing'}, the host runs {view.current or 'nothing'}"
                    self.journal.record(
                        Event.RECONCILE_CORRECTED,
                        f"{name}: "
                        + (
                            f"in doubt: {doubt}"
                            if believed == view.current
                            else said + (f" ({doubt})" if doubt else "")
                        ),
                        environment=self.env.name,
                        host=name,
                        data={"believed": believed, "actual": view.current, "served": view.served},
                    )


def _protect(version: str | None) -> tuple[str, ...]:
    return (version,) if version else ()
