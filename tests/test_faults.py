"""Fault injection over 8 real sshd hosts whose apps report their version (bench/faults: 12).

releaser is stopped right after each journal step of a run — the points are enumerated from
the journal of an undisturbed run of the same kind, so a new step is covered without touching
this file — then `releaser resume` runs, and the oracle compares the store with every host's
`current`, record and served version (tests/harness/faults.py). To keep the suite in its time budget,
each point is stopped once here, the family's steps taking SIGKILL and SIGTERM in turn;
`bench/faults` runs the whole matrix (every point with both signals) and prints the figures.

Image releases (`image_lab`: a registry on loopback, each host's podman running one container per
release; the oracle also asks podman which containers run) take the same stops, each point once,
on dev 1, test 2, prod 3, but only for three families: a promotion of test, a stage's rollback
and a rollback window's (a rollback switches as a manual one does; all eight took 5 minutes on 2
cores). The other promotions, the manual rollback and `resume --rollback` of images run in
`bench/faults --images` only.
"""

from __future__ import annotations

import time

import pytest

from tests.harness.faults import Family, Lab, Point, families, inject, reference
from tests.harness.marks import starts

FAMILIES = {family.name: family for family in families()}
IMAGE_FAMILIES = {name: FAMILIES[name] for name in ("promote test", "stage rollback", "window rollback")}


@pytest.fixture(scope="module")
@starts("sshd")
def lab(tmp_path_factory):
    lab = Lab.create(tmp_path_factory.mktemp("faults"), prod_hosts=3)  # gray 1, full 1 + 1; bench/faults: 9
    lab.resume_in_process = True
    lab.run("run", lab.new_release())
    yield lab
    lab.close()


@pytest.fixture(scope="module")
@starts("sshd", "podman")
def image_lab(tmp_path_factory):
    lab = Lab.create(tmp_path_factory.mktemp("image-faults"), prod_hosts=3, images=True)
    lab.resume_in_process = True
    lab.run("run", lab.new_release())
    yield lab
    lab.close()


def _points(lab: Lab):
    """Each family's points, from one undisturbed run of it (per lab)."""
    found: dict = {}

    def of(name: str):
        if name not in found:
            found[name] = reference(lab, FAMILIES[name])
            assert FAMILIES[name].covers <= {point.kind for point in found[name]}, found[name]
        return found[name]

    return of


@pytest.fixture(scope="module")
def points(lab):
    return _points(lab)


@pytest.fixture(scope="module")
def image_points(image_lab):
    return _points(image_lab)


# One test per family and signal, so that the workers share the matrix evenly: the points of a
# family alternate between the two signals.
@pytest.mark.parametrize("signal_name", ["KILL", "TERM"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_stopped_at_every_step_then_resumed_ends_consistent(lab, points, name, signal_name):
    _stop_at_every_other_step(lab, points(name), FAMILIES[name], signal_name)


@pytest.mark.parametrize("signal_name", ["KILL", "TERM"])
@pytest.mark.parametrize("name", list(IMAGE_FAMILIES))
def test_an_image_release_stopped_at_every_step_then_resumed_ends_consistent(
    image_lab, image_points, name, signal_name
):
    _stop_at_every_other_step(image_lab, image_points(name), IMAGE_FAMILIES[name], signal_name)


def test_the_image_oracle_sees_a_host_whose_container_stopped(image_lab):
    """The oracle of image releases asks the app and podman, not only `current` and the store."""
    from tests.harness.containers import podman

    host = image_lab.names["test"][0]
    release = image_lab.current(host)
    container = f"app-{release}"
    podman(image_lab.podman[host], "stop", "-t", "1", container)
    try:
        found = image_lab.problems()
        assert f"{host}: current {release} but the app serves None" in found
        assert f"{host}: current {release} but podman runs the containers of []" in found
    finally:
        podman(image_lab.podman[host], "start", container)
    _wait_for(lambda: image_lab.served(host) == release, timeout=20)
    assert image_lab.problems() == []


def _stop_at_every_other_step(lab: Lab, points: list[Point], family: Family, signal_name: str) -> None:
    """Stop the family at every other point (KILL the even, TERM the odd) and ask the oracle."""
    failures = []
    turn = ("KILL", "TERM").index(signal_name)
    for point in points[turn::2]:
        outcome = inject(lab, family, point, signal_name)
        if not outcome.consistent:
            failures.append(f"{signal_name} at {point}: {outcome.problems}")
    assert not failures, "\n".join(failures)


def test_partition_during_a_switch_then_resume_when_the_host_is_back(lab):
    """sshd of one host stops answering while its switch is half done: the stage fails, the
    rollback cannot reach it, the run stays open and `status` names it; once the host is
    back, `resume` finishes the rollback from the host's own record."""
    version = lab.new_release()
    victim = lab.names["test"][0]
    hold = lab.root(victim) / "shared" / "HOLD"
    hold.write_text("")
    promotion = lab.spawn("promote", version, "--to", "test", "--force", "--reason", "partition")
    _wait_for(lambda: any(s["release"] == version and s["step"] == "switched" for s in lab.steps(victim)))
    with lab.partition(victim):
        hold.unlink()  # the host finishes its switch on its own, unseen
        _, stderr = promotion.communicate(timeout=120)
        assert promotion.returncode == 4, stderr
        assert victim in stderr and "releaser resume" in stderr
        status = lab.status()["environments"]["test"]
        assert status["rollbacks"] and victim in status["rollbacks"][0]["left"]
        assert not status["consistent"]
    resumed = lab.cli("resume")
    assert resumed.returncode in (0, 1), resumed.stderr
    assert lab.problems() == []
    assert {lab.current(h) for h in lab.names["test"]} != {version}


def test_a_host_lost_during_resume_keeps_the_run_open(lab):
    version = lab.new_release()
    killed = lab.cli(
        "promote", version, "--to", "test", "--force", "--reason", "lost host", failpoint="switch.finished@test#1:KILL"
    )
    assert killed.returncode == -9
    victim = lab.names["test"][1]
    with lab.partition(victim):
        lost = lab.cli("resume", "--rollback")
        assert lost.returncode == 4, lost.stderr
        assert victim in lost.stderr
        status = lab.status()["environments"]["test"]
        assert not status["consistent"] and (status["rollbacks"] or status["interrupted"])
    assert lab.cli("resume").returncode in (0, 1)
    assert lab.problems() == []
    assert {lab.current(h) for h in lab.names["test"]} != {version}


def test_resume_never_takes_over_a_live_run(lab):
    version = lab.new_release()
    hold = lab.root(lab.names["dev"][0]) / "shared" / "HOLD"
    hold.write_text("")
    owner = lab.spawn("promote", version)
    try:
        _wait_for(lambda: any(e["kind"] == "switch.started" and e["release"] == version for e in lab.events()))
        assert lab.cli("unlock", "dev", "--force", "--reason", "impatient").returncode == 0
        refused = lab.cli("resume")
        assert refused.returncode == 3 and f"pid {owner.pid}" in refused.stderr
    finally:
        hold.unlink()
        owner.communicate(timeout=120)
    assert owner.returncode == 0
    passed = [e for e in lab.events() if e["kind"] == "stage.passed" and e["release"] == version]
    assert len(passed) == 1
    assert lab.problems() == []


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
