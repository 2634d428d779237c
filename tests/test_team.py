"""A team on one shared state (PostgreSQL): runners racing for environments, two watch daemons
sharing the rollback windows and the reports."""

from __future__ import annotations

import json
import signal

import pytest

from releaser.store.postgresql import PostgresStore
from tests.conftest import make_project
from tests.shop import wait_for


@pytest.fixture
def team(tmp_path, health, postgres):
    """The project with its state on PostgreSQL, reports due as soon as a release is out."""
    project = make_project(tmp_path, health, postgres.database())
    config = project.dir / "environments.yaml"
    config.write_text(config.read_text() + "report:\n  delay: 0s\n  language: en\n")
    return project


def _leases(store) -> dict[str, int]:
    rows = store._db.execute("SELECT environment, pid FROM locks WHERE environment LIKE 'window:%'").fetchall()
    return {row["environment"]: row["pid"] for row in rows}


def test_two_watch_daemons_share_the_windows_and_send_each_report_once(team):
    for version in ("1.0.0", "1.1.0"):
        team.register(version)
        team.cli("run", version, check=True)
    store = PostgresStore(team.state_url)
    first = team.spawn("watch", "--interval", "200ms")
    second = team.spawn("watch", "--interval", "200ms")
    daemons = {first.pid, second.pid}
    try:
        wait_for(store, "window.watching", count=3)
        wait_for(store, "report.sent", count=2)
        leases = _leases(store)
        assert len(leases) == 3 and set(leases.values()) <= daemons  # each window: one daemon
        (team.dir / "hosts" / "web-4" / "current" / "FAIL_ON").write_text("web-4\n")
        wait_for(store, "rollback.done")
        holder = first if leases[next(iter(leases))] == first.pid else second
        other = second if holder is first else first
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=60)
        # the one left takes over what the stopped daemon let go (dev's and test's windows)
        _until(lambda: set(_leases(store).values()) == {other.pid} and len(_leases(store)) == 2)
    finally:
        for daemon in (first, second):
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
    events = store.events()
    kinds = [e.kind for e in events]
    assert kinds.count("window.watching") == 3  # announced once, whoever watched
    assert kinds.count("incident") == 1 and kinds.count("rollback.done") == 1
    sent = [e.release for e in events if e.kind == "report.sent"]
    assert sorted(sent) == ["1.0.0", "1.1.0"]  # each report once, by one of them
    assert set(team.env_versions("prod").values()) == {"1.0.0"}
    store.close()


def _until(condition, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_eight_runners_racing_give_one_winner_per_environment(team):
    """Eight processes at once: four promote 1.0.0 to gray (prod), four promote 1.1.0 to
    selftest (dev). The winners hold their environments at a gate until every loser has
    answered: exactly one winner per environment, exit 3 naming the holder for the others."""
    gate = team.dir / "gate"
    playbook = team.dir / "playbooks" / "app.yaml"
    playbook.write_text(playbook.read_text().replace(
        '    if [ -n "${RESTART_DELAY:-}" ]; then sleep "$RESTART_DELAY"; fi\n',
        f'    while [ ! -e {gate} ]; do sleep 0.05; done\n'))
    gate.touch()
    team.register("1.0.0")
    team.cli("run", "1.0.0", "--to", "test", check=True)
    team.register("1.1.0")
    gate.unlink()
    runners = [team.spawn("promote", "1.0.0") for _ in range(4)] + [team.spawn("promote", "1.1.0") for _ in range(4)]
    try:
        # the winners wait at the gate, holding their environments: only the losers can end
        _until(lambda: sum(r.poll() is not None for r in runners) == 6, timeout=120)
        losers = [r for r in runners if r.poll() is not None]
        for loser in losers:
            _, err = loser.communicate()
            assert loser.returncode == 3 and "is locked by" in err, err
    finally:
        gate.touch()
        for runner in runners:
            runner.wait(timeout=120)
    winners = [r for r in runners if r not in losers]
    assert [r.returncode for r in winners] == [0, 0]
    assert {r.args[-1] for r in winners} == {"1.0.0", "1.1.0"}
    assert set(team.env_versions("dev").values()) == {"1.1.0"}
    store = PostgresStore(team.state_url)
    runs = [(r.release, r.stage) for r in store.stage_runs() if r.stage in ("selftest", "gray")]
    assert sorted(runs) == [("1.0.0", "gray"), ("1.0.0", "selftest"), ("1.1.0", "selftest")]
    store.close()
