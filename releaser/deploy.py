"""Apply a version change to hosts: prepare all, then switch (restart, verify), journaled per host.

The store hears of every switch before it happens (deployment status `switching`) and of
its outcome after, so an interrupted run can be reconciled against `readlink current`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import playbook as pb
from .fleet import Fleet, HostResult
from .journal import Journal
from .model import Deployment, Environment, Host, Playbook, Release
from .store import Store

SWITCHED = ("switched", "switched_broken")  # deployment statuses after which `current` moved


@dataclass
class ChangeOutcome:
    """Per host: ok, or why it failed (the store's host state says which hosts switched)."""

    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class Deployer:
    def __init__(self, environment: Environment, playbook: Playbook, store: Store, journal: Journal, fleet: Fleet):
        self.env, self.playbook = environment, playbook
        self.store, self.journal, self.fleet = store, journal, fleet

    # -- what the store believes --

    def current_versions(self) -> dict[str, str | None]:
        states = self.store.host_states(self.env.name)
        return {h.name: states[h.name].version if h.name in states else None for h in self.env.hosts}

    def previous_good(self, host: str, version: str) -> str | None:
        """What the host ran before it last received `version`: its rollback target."""
        for dep in reversed(self.store.deployments(environment=self.env.name, host=host)):
            if dep.action == "deploy" and dep.to_version == version and dep.status in SWITCHED:
                return dep.from_version
        return None

    def _mark_switched(self, host: str, version: str, previous: str | None) -> None:
        self.store.set_host_state(self.env.name, host, version, previous)

    # -- deploy --

    def deploy(self, release: Release, hosts: list[Host], run_id: int | None, stage: str | None) -> ChangeOutcome:
        """Prepare on every host, then switch the prepared ones (the switch runs restart and verify)."""
        outcome = ChangeOutcome()
        current = self.current_versions()
        deps = {
            d.host: d
            for d in self.store.add_deployments(
                [
                    Deployment(None, run_id, self.env.name, h.name, "deploy", current[h.name], release.version, "preparing")
                    for h in hosts
                ]
            )
        }
        tag = {"environment": self.env.name, "release": release.version, "stage": stage}

        prepared = self._prepare(release, hosts)
        ready = [h for h in hosts if prepared[h.name].ok]
        self._fail_hosts(outcome, deps, prepared, "prepare", tag)

        with self.store.transaction():
            for host in ready:
                self.store.update_deployment(deps[host.name].id, "switching")
        switched = self.fleet.run(
            "switch",
            ready,
            lambda h: pb.switch_script(
                self.playbook, h, release.version, "deploy", _protect(current[h.name])
            ),
        )
        live: list[Host] = []
        with self.store.transaction():
            for host in ready:
                result = switched[host.name]
                did_switch, _ = pb.parse_switched(result.stdout)
                if did_switch:
                    self._mark_switched(host.name, release.version, current[host.name])
                if result.ok:
                    self.store.update_deployment(deps[host.name].id, "switched")
                    live.append(host)
                else:
                    phase = "verify" if result.exit_code == pb.EXIT_VERIFY_FAILED else "switch"
                    why = f"{phase}: {result.why()}"
                    status = "switched_broken" if did_switch else "failed"
                    self.store.update_deployment(deps[host.name].id, status, why)
                    outcome.failed[host.name] = why
                    self.journal.record("host.failed", f"{host.name}: {why}", host=host.name, data=result.to_dict(), **tag)

        outcome.ok = [h.name for h in live]
        return outcome

    def _prepare(self, release: Release, hosts: list[Host]) -> dict[str, HostResult]:
        """Get the artifact onto each host (pushed by the transport, or pulled by the host
        from the release's URL), check its sha256 there, unpack."""
        pull = self.env.artifacts == "pull"
        return self.fleet.run(
            "prepare",
            hosts,
            lambda h: pb.prepare_script(self.playbook, h, release.version, release.sha256, release.url if pull else None),
            None if pull else (lambda h: [(release.artifact, pb.artifact_path(h, release.version))]),
        )

    def _fail_hosts(self, outcome, deps, results: dict[str, HostResult], phase: str, tag: dict) -> None:
        with self.store.transaction():
            for name, result in results.items():
                if result.ok:
                    continue
                why = f"{phase}: {result.why()}"
                outcome.failed[name] = why
                self.store.update_deployment(deps[name].id, "failed", why)
                self.journal.record("host.failed", f"{name}: {why}", host=name, data=result.to_dict(), **tag)

    # -- rollback --

    def switch_back(
        self, targets: dict[str, str], run_id: int | None, releases: dict[str, Release], stage: str | None
    ) -> ChangeOutcome:
        """Switch each host to its target release with the same switch code path as a deploy.

        A target no longer unpacked on a host (cleaned up, or a new host) is prepared first
        from its registered artifact, then switched."""
        outcome = ChangeOutcome()
        if not targets:
            return outcome
        current = self.current_versions()
        hosts = [h for h in self.env.hosts if h.name in targets]
        deps = {
            d.host: d
            for d in self.store.add_deployments(
                [
                    Deployment(None, run_id, self.env.name, h.name, "rollback", current[h.name], targets[h.name], "switching")
                    for h in hosts
                ]
            )
        }

        def script(host: Host) -> str:
            return pb.switch_script(self.playbook, host, targets[host.name], "rollback", _protect(current[host.name]))

        results = self.fleet.run("rollback", hosts, script)
        missing = [h for h in hosts if results[h.name].exit_code == pb.EXIT_NOT_PREPARED]
        for version in sorted({targets[h.name] for h in missing}):
            group = [h for h in missing if targets[h.name] == version]
            prepared = self._prepare(releases[version], group)
            again = self.fleet.run("rollback", [h for h in group if prepared[h.name].ok], script)
            results.update({name: prepared[name] for name in prepared if not prepared[name].ok})
            results.update(again)

        tag = {"environment": self.env.name, "stage": stage}
        with self.store.transaction():
            for host in hosts:
                result = results[host.name]
                did_switch, _ = pb.parse_switched(result.stdout)
                target = targets[host.name]
                if did_switch:
                    self._mark_switched(host.name, target, self.previous_good(host.name, target))
                if result.ok:
                    self.store.update_deployment(deps[host.name].id, "switched")
                    outcome.ok.append(host.name)
                else:
                    why = f"rollback: {result.why()}"
                    self.store.update_deployment(deps[host.name].id, "failed", why)
                    outcome.failed[host.name] = why
                    self.journal.record(
                        "host.rollback_failed", f"{host.name}: {why}", host=host.name, release=target,
                        data=result.to_dict(), **tag,
                    )
        return outcome

    # -- reality --

    def probe(self, hosts: list[Host] | None = None) -> dict[str, str | None | Exception]:
        """What each host really runs (`readlink current`), or the error that hid it."""
        hosts = list(hosts or self.env.hosts)
        results = self.fleet.run("probe", hosts, pb.probe_script)
        return {
            name: pb.parse_current(r.stdout) if r.ok else RuntimeError(r.why())
            for name, r in results.items()
        }


def _protect(version: str | None) -> tuple[str, ...]:
    return (version,) if version else ()
