"""A team on one shared state (PostgreSQL): runners racing for environments, two watch daemons
sharing the rollback windows and the reports."""

from __future__ import annotations

import json
import signal
from datetime import UTC

import pytest

from releaser.store.postgresql import PostgresStore
from tests.harness.project import gated, make_project
from tests.harness.shop import wait_for


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
    gate = gated(team)
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


def _approval_on_full(project, rule: str) -> None:
    project.stage_options["full"] = f"    approval: {rule}\n"
    project.write_config()


def test_approval_stops_the_stage_until_an_approver_decides_from_another_process(team):
    _approval_on_full(team, "{approvers: [lead, ops], not_by_promoter: true}")
    team.register("1.0.0")
    team.cli("run", "1.0.0", "--to", "gray", check=True, actor="ci")
    asked = team.cli("promote", "1.0.0", actor="ci")
    assert asked.returncode == 5 and "awaiting approval" in asked.stderr and "lead or ops" in asked.stderr
    awaiting = team.status()["approvals"]
    assert [(a["release"], a["stage"], a["requested_by"], a["approvers"]) for a in awaiting] == [
        ("1.0.0", "full", "ci", ["lead", "ops"])
    ]
    release = next(r for r in team.status()["releases"] if r["version"] == "1.0.0")
    assert (release["status"], release["reason"]) == ("awaiting_approval", "full awaits approval, asked by ci")
    told = team.cli("status", check=True).stdout
    assert "awaiting approval: full of 1.0.0, asked by ci" in told and "1.0.0          awaiting_approval" in told
    refused = team.cli("approve", "1.0.0", "--reason", "looks fine", actor="ci")
    assert refused.returncode == 3 and "approvers are lead, ops" in refused.stderr
    assert set(team.env_versions("prod").values()) != {"1.0.0"}  # full has not run

    waiting = team.spawn("promote", "1.0.0", "--wait", actor="ci")
    store = PostgresStore(team.state_url)
    try:
        wait_for(store, "approval.requested")  # asked once: the waiting runner uses the same request
        team.cli("approve", "1.0.0", "--stage", "full", "--reason", "CAB-118", check=True, actor="lead")
        assert waiting.wait(timeout=120) == 0, waiting.communicate()
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert set(team.env_versions("prod").values()) == {"1.0.0"}
    kinds = [(e.kind, e.data.get("by")) for e in store.events(release="1.0.0") if e.kind.startswith("approval.")]
    assert kinds == [("approval.requested", "ci"), ("approval.granted", "lead")]
    assert [a.state for a in store.approvals("1.0.0")] == ["used"] and team.status()["approvals"] == []

    # the promoter may not approve its own request; a rejection ends the waiting runner with exit 3
    team.register("1.1.0")
    team.cli("run", "1.1.0", "--to", "gray", check=True, actor="lead")
    waiting = team.spawn("promote", "1.1.0", "--wait", actor="lead")
    try:
        _until(lambda: len(store.approvals("1.1.0", "awaiting")) == 1)
        own = team.cli("approve", "1.1.0", "--reason", "mine", actor="lead")
        assert own.returncode == 3 and "may not approve it too" in own.stderr
        team.cli("reject", "1.1.0", "--reason", "error budget spent", check=True, actor="ops")
        _, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 3 and "rejected by ops: error budget spent" in err
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert list(team.env_versions("prod").values()).count("1.1.0") == 1  # its gray cohort only: full never ran
    store.close()


def test_abort_from_another_runner_rolls_the_stage_back(team):
    gate = gated(team)
    team.register("1.0.0")
    team.cli("run", "1.0.0", check=True)
    team.register("1.1.0")
    team.cli("run", "1.1.0", "--to", "test", check=True)
    gate.unlink()
    store = PostgresStore(team.state_url)
    switches = sum(e.kind == "switch.started" for e in store.events())
    runner = team.spawn("promote", "1.1.0", actor="ci")  # gray, held at the gate mid-switch
    try:
        wait_for(store, "switch.started", count=switches + 1)
        aborting = team.spawn("abort", "1.1.0", "--reason", "support sees checkout errors", actor="alice")
        wait_for(store, "abort.requested")
        gate.touch()
        assert aborting.wait(timeout=120) == 0, aborting.communicate()
        assert "gray of 1.1.0 on prod: rolled_back" in aborting.communicate()[0]
        assert runner.wait(timeout=120) == 1
    finally:
        for process in (runner,):
            if process.poll() is None:
                process.kill()
    assert set(team.env_versions("prod").values()) == {"1.0.0"}
    failed = next(e for e in store.events(release="1.1.0") if e.kind == "stage.failed")
    assert failed.data["cause"] == "abort" and "aborted by alice: support sees checkout errors" in failed.message

    # a runner killed mid-stage: the abort rolls back itself
    gate.unlink()
    switches = sum(e.kind == "switch.started" for e in store.events())
    runner = team.spawn("promote", "1.1.0", actor="ci")
    wait_for(store, "switch.started", count=switches + 1)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    gate.touch()
    team.cli("abort", "1.1.0", "--reason", "the runner died", check=True, actor="alice")
    assert set(team.env_versions("prod").values()) == {"1.0.0"}
    last = [e for e in store.events(release="1.1.0") if e.kind == "stage.failed"][-1]
    assert last.data["cause"] == "abort" and last.data["reason"] == "aborted by alice: the runner died"
    assert team.cli("abort", "1.1.0", "--reason", "again").returncode == 2  # nothing in progress
    store.close()


def test_freeze_windows_once_and_weekly_across_zones_and_dst():
    from datetime import datetime

    from releaser.freezes import frozen
    from releaser.model import Freeze

    weekend = Freeze("weekend", "Fri 18:00", "Mon 08:00", True, "Europe/Berlin", ("prod",))
    year_end = Freeze("year-end", "2026-12-20 00:00", "2027-01-04 08:00", False, "Asia/Shanghai")

    def at(text):
        return datetime.fromisoformat(text).astimezone(UTC)

    assert frozen((weekend,), "prod", at("2026-12-04T16:59:00+00:00")) is None  # Fri 17:59 in Berlin
    held = frozen((weekend,), "prod", at("2026-12-04T17:00:00+00:00"))  # Fri 18:00 in Berlin
    assert held.until == at("2026-12-07T07:00:00+00:00")  # Mon 08:00 CET
    assert frozen((weekend,), "dev", at("2026-12-05T12:00:00+00:00")) is None  # other environments are free
    assert frozen((weekend,), "prod", at("2026-12-07T07:00:00+00:00")) is None  # Mon 08:00: over
    # a weekend across the spring change of clocks ends at 08:00 local, summer time
    assert frozen((weekend,), "prod", at("2027-03-27T12:00:00+00:00")).until == at("2027-03-29T06:00:00+00:00")
    # once, in another zone: 2026-12-19 16:00 UTC is 2026-12-20 00:00 in Shanghai
    assert frozen((year_end,), "dev", at("2026-12-19T15:59:00+00:00")) is None
    assert frozen((year_end,), "dev", at("2026-12-19T16:00:00+00:00")).until == at("2027-01-04T00:00:00+00:00")
    # of two freezes, the one that ends last is named
    both = frozen((weekend, year_end), "prod", at("2027-01-02T12:00:00+00:00"))
    assert both.freeze.name == "weekend" and both.until == at("2027-01-04T07:00:00+00:00")


def test_a_freeze_refuses_promotions_not_rollbacks_and_force_is_journaled(project):
    project.register("1.0.0")
    project.cli("run", "1.0.0", "--to", "test", "--force", "--reason", "nothing to force yet", check=True)
    stages = {s["stage"]: s for s in project.status()["releases"][0]["stages"]}
    assert stages["selftest"]["reason"] == stages["test"]["reason"] == ""  # no freeze, no skip: nothing forced
    config = project.dir / "environments.yaml"
    config.write_text(
        config.read_text()
        + (
            "freeze:\n  - name: year-end\n    from: 2020-12-20 00:00\n    until: 2099-01-04 08:00\n"
            "    timezone: Asia/Shanghai\n    environments: [prod, test]\n"
        )
    )
    project.register("1.1.0")
    refused = project.cli("promote", "1.0.0")
    assert refused.returncode == 3 and "prod is frozen: year-end" in refused.stderr, refused.stderr
    assert "environments.yaml:" in refused.stderr and "--force --reason" in refused.stderr
    assert project.cli("run", "1.1.0").returncode == 3  # selftest on dev runs; test is frozen
    assert project.current("dev-1") == "1.1.0" and project.current("test-1") == "1.0.0"
    assert "frozen: prod: year-end" in project.cli("status", check=True).stdout
    project.cli("rollback", "dev", "--reason", "never frozen", check=True)  # the way back is always open
    project.cli("promote", "1.0.0", "--force", "--reason", "INC-7 hotfix, CAB approved", check=True, actor="ops")
    override = [
        e
        for e in json.loads(project.cli("history", "--json", check=True).stdout)["events"]
        if e["kind"] == "freeze.overridden"
    ]
    assert len(override) == 1 and override[0]["data"]["by"] == "ops" and "INC-7" in override[0]["data"]["reason"]
    release = next(r for r in project.status()["releases"] if r["version"] == "1.0.0")
    gray = next(s for s in release["stages"] if s["stage"] == "gray")
    assert gray["reason"] == "INC-7 hotfix, CAB approved"  # the stage forced through the freeze says why


@pytest.mark.parametrize(
    "text, key, words",
    [
        (
            "freeze:\n  - {name: x, from: 2026-12-20, until: 2026-12-19, timezone: UTC}\n",
            "freeze[0].until",
            "before it starts",
        ),
        (
            "freeze:\n  - {name: x, weekly: {from: Fri 18:00, until: Funday 08:00}, timezone: UTC}\n",
            "freeze[0].weekly.until",
            "a day and a time",
        ),
        ("freeze:\n  - {name: x, from: 2026-12-20 00:00, until: 2026-12-21 00:00}\n", "freeze[0].timezone", "required"),
        (
            "freeze:\n  - {name: x, from: 2026-12-20, until: 2026-12-21, timezone: Mars/Olympus}\n",
            "freeze[0].timezone",
            "unknown time zone",
        ),
        (
            "freeze:\n  - {name: x, from: 2026-12-20, until: 2026-12-21, timezone: UTC, environments: [staging]}\n",
            "freeze[0].environments[0]",
            "unknown environment",
        ),
    ],
)
def test_bad_freezes_are_named_at_their_line(project, text, key, words):
    config = project.dir / "environments.yaml"
    config.write_text(config.read_text() + text)
    proc = project.cli("validate")
    assert proc.returncode == 2 and key in proc.stderr and words in proc.stderr, proc.stderr


def test_a_watch_daemon_outlives_a_database_restart(team, postgres):
    """The state's server restarts (a failover): every connection is cut. The daemon says so,
    reconnects at its next look, keeps its windows and rolls back a failure after it."""
    for version in ("1.0.0", "1.1.0"):
        team.register(version)
        team.cli("run", version, check=True)
    store = PostgresStore(team.state_url)
    daemon = team.spawn("watch", "--interval", "200ms")
    try:
        wait_for(store, "window.watching", count=3)
        store.close()
        postgres.restart()
        store = PostgresStore(team.state_url)
        (team.dir / "hosts" / "web-4" / "current" / "FAIL_ON").write_text("web-4\n")
        wait_for(store, "rollback.done")
        assert daemon.poll() is None  # still watching
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert "looking again in 200ms" in err and "Traceback" not in err, err
    assert set(team.env_versions("prod").values()) == {"1.0.0"}
    store.close()


def test_who_may_approve_is_said_plainly():
    from releaser.decisions import _who_may
    from releaser.model import ApprovalRequest, ApprovalState

    def request(approvers: list[str], not_by_promoter: bool) -> ApprovalRequest:
        return ApprovalRequest(1, "1.0", "full", ApprovalState.AWAITING, "alice", "", approvers, not_by_promoter)

    assert _who_may(request([], False)) == "anyone"
    assert _who_may(request([], True)) == "anyone but alice, who asked"
    assert _who_may(request(["alice", "bob"], True)) == "bob"
    assert _who_may(request(["alice", "bob"], False)) == "alice or bob"
    assert _who_may(request(["alice"], True)).startswith("nobody: its only approver, alice, asked for it")


def test_a_rejection_holds_until_the_promoter_asks_again(tmp_path):
    """A rejected stage is not asked for again by the next `promote` (a CI retry would pester the
    approvers and bury the rejection): it exits 3 naming it, until `--ask-again`."""
    import pytest

    from releaser.config import load_config
    from releaser.decisions import approved, decide
    from releaser.errors import AwaitingApproval, Refused
    from releaser.interrupts import Interrupts
    from releaser.journal import Journal
    from releaser.model import Release, utcnow
    from releaser.processes import acting_as
    from releaser.store import open_store
    from tests.harness.configs import write_project

    write_project(tmp_path)
    path = tmp_path / "environments.yaml"
    path.write_text(
        path.read_text().replace(
            "  - stage: full\n    environment: prod\n", "  - stage: full\n    environment: prod\n    approval: {}\n"
        )
    )
    config = load_config(path)
    store = open_store(config, create=True)
    journal = Journal(store, None)
    store.add_release(Release("2.0", "/a.tgz", "ab" * 32, 1, created_at=utcnow(), created_by="ci"))
    full = config.stage("full")

    def promote(ask_again: bool = False):
        with acting_as("ci"):
            return approved(store, journal, full, "2.0", False, Interrupts(), ask_again=ask_again)

    with pytest.raises(AwaitingApproval):
        promote()
    with acting_as("bob"):
        decide(store, journal, "2.0", "full", False, "error budget spent")
    with pytest.raises(Refused) as refused:
        promote()
    assert "full of 2.0 was rejected by bob: error budget spent" in str(refused.value)
    assert "releaser promote 2.0 --to full --ask-again" in str(refused.value)
    assert len(store.approvals("2.0")) == 1  # nobody was asked again
    with pytest.raises(AwaitingApproval):
        promote(ask_again=True)
    asked = store.find_events(kind="approval.requested")[0]  # the newest first
    assert "ci asks again, after bob's rejection (error budget spent), to promote 2.0" in asked.message
