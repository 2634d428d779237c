"""releaser as a newcomer uses it, on services nobody in this project wrote: Debian's prometheus
and prometheus-alertmanager as "the app", from `releaser init`'s starter, over real sshd hosts,
with quiet traffic (tests/field.py)."""

from __future__ import annotations

import json
import re

import pytest

from tests.field import ALERTMANAGER, HOSTS, PROMETHEUS, FieldProject, Traffic, Webhook, alertmanager_release, \
    prometheus_release, starter


@pytest.fixture
def webhook():
    receiver = Webhook()
    yield receiver
    receiver.close()


@pytest.fixture(params=["prometheus", "alertmanager"])
def field(request, tmp_path, ssh_fleet) -> FieldProject:
    """The starter with the service as its app; every process it started is ended afterwards."""
    ssh_fleet.heal()
    service = PROMETHEUS if request.param == "prometheus" else ALERTMANAGER
    project = starter(tmp_path, service, ssh_fleet)
    if service is ALERTMANAGER:
        hook = request.getfixturevalue("webhook")
        project.release = lambda version, kind="good": alertmanager_release(version, hook.url, kind)
    else:
        project.release = prometheus_release
    yield project
    project.stop_services()


def traffic(project: FieldProject) -> Traffic:
    return Traffic({host: project.url(host) for host in HOSTS["prod"]}, project.service.request)


def runs(proc) -> list[tuple[str, str]]:
    return [(r["stage"], r["status"]) for r in json.loads(proc.stdout)["runs"]]


def test_a_good_release_passes_every_stage_judged_by_the_canary(field):
    with traffic(field) as sent:
        field.register("1.0.0", field.release("1.0.0"))
        first = field.ok("run", "1.0.0", "--json")
        assert runs(first) == [("selftest", "passed"), ("test", "passed"), ("gray", "passed"), ("full", "passed")]
        field.register("1.1.0", field.release("1.1.0"))
        second = field.ok("run", "1.1.0", "--json")
        assert runs(second) == [("selftest", "passed"), ("test", "passed"), ("gray", "passed"), ("full", "passed")]
    print(second.stderr)
    assert {field.running(h) for hosts in HOSTS.values() for h in hosts} == {"1.1.0"}
