"""releaser as a newcomer uses it, on services nobody in this project wrote: Debian's prometheus
and prometheus-alertmanager as "the app", from `releaser init`'s starter, over real sshd hosts,
with quiet traffic (tests/harness/field.py). The first failure path runs for both services; the
good path (three and a half minutes of quiet traffic) runs with prometheus and the gray failure
path with alertmanager, to keep the suite in 20 minutes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests

from tests.harness.field import (
    HOSTS,
    RATE,
    REFUSALS,
    FieldProject,
    field_project,
)

EVERY_STAGE = ["selftest", "test", "gray", "full"]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("prometheus", marks=pytest.mark.prometheus),
        pytest.param("alertmanager", marks=pytest.mark.alertmanager),
    ],
)
def service(request) -> str:
    """Module-scoped, so that pytest orders the tests service by service: pytest-xdist then
    gives each worker a mix of long and short ones."""
    return request.param


@pytest.fixture
def field(service, tmp_path, ssh_fleet) -> Iterator[FieldProject]:
    """The starter with the service as its app; everything it started ends with the test."""
    ssh_fleet.heal()
    project = field_project(service, tmp_path, ssh_fleet)
    try:
        yield project
    finally:
        project.close()


def stages(proc) -> list[tuple[str, str]]:
    return [(run["stage"], run["status"]) for run in json.loads(proc.stdout)["runs"]]


def stages_of(project: FieldProject, version: str) -> list[tuple[str, str]]:
    """The release's stage runs as `status` tells them (a failed run's JSON names only its error)."""
    return [(run["stage"], run["status"]) for run in release_status(project, version)["stages"]]


def release_status(project: FieldProject, version: str) -> dict:
    return next(r for r in json.loads(project.ok("status", "--json").stdout)["releases"] if r["version"] == version)


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def live_at(project: FieldProject, version: str) -> float:
    """When `version` passed its last stage (the journal's stage.passed of full)."""
    return epoch(next(e["ts"] for e in project.events(version) if e["kind"] == "stage.passed" and e["stage"] == "full"))


def first_install(project: FieldProject) -> None:
    """1.0.0 through every stage on an empty fleet: at gray the canary has no baseline to judge
    against, says so, and the other checks decide."""
    project.register("1.0.0")
    assert stages(project.ok("run", "1.0.0", "--json")) == [(stage, "passed") for stage in EVERY_STAGE]
    why = [e for e in project.events("1.0.0") if e["kind"] == "check.not_applicable"]
    assert [(e["stage"], e["data"]["check"]) for e in why] == [("gray", "canary")]


@pytest.mark.sshd  # its `field` is asked for in the test, after the skip: the mark its fixtures would give
def test_a_good_release_passes_every_stage_and_its_report_reads_true(service, request):
    if service == "alertmanager":  # 3.5 minutes of quiet traffic: one service keeps the suite in its 20
        pytest.skip("the good path runs with prometheus; alertmanager's two failure paths run in full")
    field = request.getfixturevalue("field")
    with field.traffic() as sent:
        first_install(field)
        with field.watching():
            field.wait_for_sample(live_at(field, "1.0.0") + 10)  # 1.1.0's window before: a steady 1.0.0
            field.register("1.1.0")
            run = field.ok("run", "1.1.0", "--json")
            assert stages(run) == [(stage, "passed") for stage in EVERY_STAGE]
            field.wait_for_sample(live_at(field, "1.1.0") + 22)  # its window after (20s) measured whole
    # the canary judged the cohort against the baseline and showed it no worse on both metrics
    gray = [e for e in field.events("1.1.0") if e["kind"] == "checks.pass" and e["stage"] == "gray"]
    canary = next(r for r in gray[0]["data"]["results"] if r["check"] == "canary")
    assert canary["summary"].count("=> no regression") == 2, canary
    assert {field.running(host) for hosts in HOSTS.values() for host in hosts} == {"1.1.0"}
    assert set(field.store_versions("prod").values()) == {"1.1.0"}

    report = json.loads(field.ok("report", "1.1.0", "--format", "json", "--out", "-").stdout)
    words = field.ok("report", "1.1.0", "--format", "md", "--out", "-").stdout
    assert report["incidents"] == [] and report["problems"] == []
    assert "No incidents: nothing had to be rolled back." in words
    assert "has been live for all users of prod since" in words
    assert "no metrics were available" not in words and "Rolled back" not in words
    before_1_1_0 = epoch(report["windows"]["before"]["start"])
    assert before_1_1_0 > live_at(field, "1.0.0")  # nothing but a steady 1.0.0 in it
    metrics = {m["key"]: m for m in report["metrics"]}
    # nothing changed between the windows (the same traffic, the same binary), and nothing says so
    for metric in metrics.values():
        assert metric["direction"] in (None, "same") and metric["assessment"] is None, metric
    assert metrics["error_rate"]["before"] == metrics["error_rate"]["after"] == 0
    assert metrics["availability"]["before"] == metrics["availability"]["after"] == 1
    # the requests it counted are the traffic that was served, window by window (a loose bound:
    # the report counts between its samples, which a busy machine spaces out)
    requests_ = metrics["requests"]
    for window in ("before", "after"):
        start, end = (epoch(report["windows"][window][edge]) for edge in ("start", "end"))
        served = sent.count(start, end) / (end - start)  # a second, every prod host together
        assert served == pytest.approx(len(HOSTS["prod"]) * RATE, rel=0.3)
        assert requests_[f"{window}_seconds"] > 5  # of the 20s window
        counted = requests_[f"{window}_total"] / requests_[f"{window}_seconds"]
        assert counted == pytest.approx(served, rel=0.3), (window, counted, served)


def test_a_release_that_does_not_start_is_caught_at_selftest(field):
    checked = field.ok("validate", "--connect")  # the starter as changed: every host reached and ready
    assert "6 host(s) reached and ready" in checked.stdout, checked.stdout
    field.register("1.0.0")
    assert stages(field.ok("promote", "1.0.0", "--json")) == [("selftest", "passed")]
    field.register("1.3.0", "broken")
    proc = field.cli("promote", "1.3.0", "--json")
    assert proc.returncode == 1, proc.stderr
    assert stages_of(field, "1.3.0") == [("selftest", "rolled_back")]
    # the service's own words say why, at the host and hook that failed
    failed = next(line for line in proc.stderr.splitlines() if line.startswith("error: selftest of 1.3.0 failed"))
    assert f"dev-1: verify: exit 1: {field.service.name} exited; the end of its log:" in failed, proc.stderr
    assert REFUSALS[field.service.name] in failed
    # while rolling back, the host that does not serve is named in words, not as "serves ?"
    assert (
        "dev-1: in doubt: `current` is 1.3.0 but the app told no release (its version hook, service or container): "
        "is it running?"
        in proc.stderr
        and "serves ?" not in proc.stderr
    )
    assert field.store_versions("dev") == {"dev-1": "1.0.0"}
    assert field.running("dev-1") == "1.0.0"
    assert requests.get(field.url("dev-1") + field.service.ready, timeout=5).status_code == 200


@pytest.mark.sshd
def test_a_release_serving_errors_is_caught_at_gray_and_rolled_back(service, request):
    if service == "prometheus":  # its good path has been through gray: alertmanager takes this one
        pytest.skip("the gray failure path runs with alertmanager; prometheus runs the good path")
    field = request.getfixturevalue("field")
    with field.traffic():
        first_install(field)
        field.register("1.2.0", "errors")
        run = field.cli("run", "1.2.0", "--json")
    assert run.returncode == 1, run.stderr
    assert json.loads(run.stdout)["error"]["kind"] == "StageFailed"
    assert stages_of(field, "1.2.0") == [("selftest", "passed"), ("test", "passed"), ("gray", "rolled_back")]
    # the judge's verdict, explained where the user looks
    assert "canary: error ratio: cohort" in run.stderr and "=> regression" in run.stderr
    events = field.events("1.2.0")
    incident = [e for e in events if e["kind"] == "incident"]
    assert len(incident) == 1 and incident[0]["stage"] == "gray"
    cohort = next(e["data"]["hosts"] for e in events if e["kind"] == "wave.started" and e["stage"] == "gray")
    assert len(cohort) == 1
    # it really served errors while it ran: notifications the receiver refused
    assert field.webhook.refused > 0
    # prod is back on 1.0.0: in the store and in the processes that serve, and they serve well again
    assert set(field.store_versions("prod").values()) == {"1.0.0"}
    assert {field.running(host) for host in HOSTS["prod"]} == {"1.0.0"}
    with requests.Session() as session:
        assert field.service.request(session, field.url(cohort[0]), cohort[0], 0) == 200
    status = release_status(field, "1.2.0")
    assert status["status"] == "rolled_back" and "regression" in status["reason"], status
