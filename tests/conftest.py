"""Shared fixtures: a project of local-transport hosts, a health server, real sshd and PostgreSQL,
a webhook receiver. What they build lives in tests/harness/."""

from __future__ import annotations

import os

import pytest

from tests.harness import leftovers, marks
from tests.harness.loopback import Receiver
from tests.harness.marks import starts
from tests.harness.postgres import PostgresServer
from tests.harness.project import HOSTS, HealthServer, Project, make_project
from tests.harness.sshd import SshFleet


def _ports_of_this_worker() -> str:
    """Each pytest-xdist worker draws the ports of its servers and apps from a slice of its own of
    the range (and so do the releaser processes it starts), so that two workers never pick the
    same port. Read before any worker's slice is set: a worker inherits the controller's
    environment, which imported this module first (the controller's slice is the whole range)."""
    whole = os.environ.setdefault("TESTS_PORT_RANGE", os.environ.get("RELEASER_PORTS", "10000-32767"))
    low, high = (int(end) for end in whole.split("-"))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    size = (high - low + 1) // workers
    return f"{low + size * worker}-{low + size * (worker + 1) - 1}"


os.environ["RELEASER_PORTS"] = _ports_of_this_worker()


@pytest.fixture
def health():
    server = HealthServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
@starts("sshd")
def ssh_fleet(tmp_path_factory):
    """13 SSH hosts (dev 1, test 2, prod 10) on 127.0.0.2-14, four per sshd."""
    fleet = SshFleet(tmp_path_factory.mktemp("sshd"), sum(len(h) for h in HOSTS.values()), per_sshd=4)
    yield fleet
    fleet.close()


@pytest.fixture
def ssh_project(project, ssh_fleet):
    """The project's hosts reached over the real sshd fleet."""
    ssh_fleet.heal()  # a previous test may have stopped or rekeyed a server
    project.write_config(ssh=ssh_fleet)
    project.fleet = ssh_fleet
    return project


@pytest.fixture(scope="session")
@starts("postgres")
def postgres():
    """A real PostgreSQL server for this test process; each test takes a database of its own."""
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture
@starts()  # its helpers run releaser as a subprocess
def project(tmp_path, health) -> Project:
    return make_project(tmp_path, health)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
@starts()
def any_project(request, tmp_path, health) -> Project:
    """The project, with its state on each backend in turn."""
    url = request.getfixturevalue("postgres").database() if request.param == "postgresql" else None
    return make_project(tmp_path, health, url)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


# Modules whose tests run for minutes, started first: with a few workers, a long test collected last
# keeps one worker busy while the others have run out of work. Within a module the order stays
# (module-scoped fixtures are set up once per worker).
LONG_FIRST = (
    "test_field.py",
    "test_demo.py",
    "test_faults.py",
    "test_migrations.py",
    "test_prometheus.py",
    "test_images.py",
    "test_web_live.py",
)


def pytest_collection_modifyitems(items):
    """Mark each test with the real parts its fixtures start; any part makes it `real`. Order the
    modules of long tests first (LONG_FIRST)."""
    rank = {name: number for number, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))  # stable: each module keeps its order
    for item in items:
        parts = marks.fixture_parts(item) | {m.name for m in item.iter_markers() if m.name in marks.PARTS}
        for part in sorted(parts | ({"real"} if parts else set())):
            if item.get_closest_marker(part) is None:
                item.add_marker(part)


@pytest.fixture(autouse=True)
def _subprocesses_of_releaser_are_real(request, monkeypatch):
    marks.guard_subprocesses(request.node, monkeypatch)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item):
    marks.current = item
    try:
        yield
    finally:
        marks.current = None


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session):
    """Fail the run if a process it started still runs once it is over (with xdist: once every
    worker is gone, in the controller). What is found is listed, then stopped."""
    yield
    if hasattr(session.config, "workerinput"):
        return
    left = leftovers.settle(os.getpid(), session.config._tmp_path_factory.getbasetemp())
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    reporter.write_line("")
    reporter.write_sep("=", f"{len(left)} process(es) the tests started still ran at the end (now stopped)", red=True)
    for pid, command in left.items():
        reporter.write_line(f"{pid}: {command[:300]}")
    leftovers.end(list(left))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
