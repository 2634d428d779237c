"""Gray by users through a real nginx in front of real demo app processes (local transport):
the share of users, stickiness, the allow list, a full rollout under load without a failed
request, a bad release caught at gray and routed back before its hosts are switched, a route
nginx refuses mid-stage, and kill -9 during a route change then resume."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from releaser.errors import StageFailed
from tests.harness.marks import starts
from tests.harness.shop import Shop, Users, run_in_thread, wait_for


@pytest.fixture
@starts("nginx")
def shop(tmp_path):
    shop = Shop.create(tmp_path, hosts=5)  # a cohort of one and two waves, as with ten: quicker
    yield shop.pipeline, shop.nginx, shop.gate
    shop.close()


def test_gray_by_users_is_sticky_and_the_full_rollout_drops_no_request(shop):
    pipeline, nginx, gate = shop
    store = pipeline.store
    gate.opened.set()
    pipeline.run("1.0.0")  # a first install, through the router too
    gate.opened.clear()
    users = Users(nginx.port, [f"user-{i}" for i in range(40)])
    with users:
        thread, outcome = run_in_thread(pipeline, "1.1.0")
        wait_for(store, "bake.started", 3)  # 1.0.0's gray and full, then 1.1.0's gray step
        during_gray = users.mark()
        with ThreadPoolExecutor(4) as pool:  # 1,000 distinct users, each asked once
            shoppers = [f"shopper-{i}" for i in range(1000)]
            split = dict(zip(shoppers, (version for version, _ in pool.map(users.ask, shoppers)), strict=False))
        assert users.ask("qa-1")[0] == "1.1.0"  # the allow list
        assert {users.ask(None)[0] for _ in range(30)} == {"1.0.0"}  # no key: the stable side
        share = 100 * sum(1 for v in split.values() if v == "1.1.0") / len(split)
        assert 8.5 <= share <= 11.5, share
        gray_answers = users.since(during_gray)
        gate.opened.set()
        thread.join(timeout=300)
    assert "error" not in outcome, outcome
    seen: dict[str, list[str]] = defaultdict(list)
    for user, version, error in users.answers:
        assert version is not None, f"{user}: a failed request: {error}"
        seen[user].append(version)
    sides = defaultdict(set)
    for user, version, _ in gray_answers:
        sides[user].add(version)
    assert all(len(versions) == 1 for versions in sides.values()), sides  # no user on both sides in gray
    for user, versions in seen.items():  # once on the new release, never back
        first_new = versions.index("1.1.0") if "1.1.0" in versions else len(versions)
        assert set(versions[first_new:]) <= {"1.1.0"}, user
    assert users.ask("anyone")[0] == "1.1.0" and users.ask(None)[0] == "1.1.0"
    kinds = [e.kind for e in store.events()]
    assert "route.failed" not in kinds and kinds.count("route.changing") == kinds.count("route.changed")


def test_a_bad_release_is_routed_back_before_its_hosts_are_switched(shop):
    pipeline, nginx, gate = shop
    store = pipeline.store
    gate.opened.set()
    pipeline.run("1.1.0")
    users = Users(nginx.port, [f"user-{i}" for i in range(200)], paths=("/api/orders/batch",))
    with users, pytest.raises(StageFailed):
        pipeline.run("1.2.0")  # its batch orders fail: the health check of its cohort fails
    events = store.events()
    kinds = [e.kind for e in events]
    failed = kinds.index("stage.failed", kinds.index("switch.finished"))
    back = next(i for i in range(failed, len(events)) if events[i].kind == "route.changed")
    switched_back = next(i for i in range(failed, len(events)) if events[i].kind == "switch.started")
    assert back < switched_back  # every user on the stable side first, then the hosts
    assert events[back].data["route"]["share"] == 0.0
    assert {users.ask(f"user-{i}", "/api/items")[0] for i in range(200)} == {"1.1.0"}
    from releaser.status import print_status, status_document

    document = status_document(pipeline.config, store)
    route = document["environments"]["prod"]["route"]
    assert route["applied"] and route["users_on_new"] == 0 and route["text"].startswith("every user to the stable side")
    said = []
    print_status(document, lambda text, *_: said.append(text))
    assert f"  router: every user to the stable side ({len(pipeline.config.environments['prod'].hosts)} hosts)" in said


def route_in_file(nginx) -> dict:
    """The route the file on the router holds (its RELEASER_ROUTE header line)."""
    line = next(line for line in nginx.route.read_text().splitlines() if "RELEASER_ROUTE " in line)
    return json.loads(line.split("RELEASER_ROUTE ", 1)[1])


def test_a_route_nginx_refuses_mid_stage_fails_it_and_rolls_back(shop):
    pipeline, nginx, gate = shop
    store = pipeline.store
    gate.opened.set()
    pipeline.run("1.0.0")
    gate.opened.clear()
    thread, outcome = run_in_thread(pipeline, "1.1.0")
    wait_for(store, "switch.started", 4)  # 1.0.0: gray and full's two waves; then 1.1.0's cohort
    held = nginx.route.read_text()
    nginx.conf.write_text(nginx.conf.read_text().replace("worker_processes 1;", "worker_processes 1;\nbroken;"))
    thread.join(timeout=300)
    assert isinstance(outcome.get("error"), StageFailed), outcome
    assert nginx.route.read_text() == held  # every later route was refused: the file is as it was, nothing reloaded
    refused = [e for e in store.events() if e.kind == "route.failed"]
    assert refused and all("broken" in e.message for e in refused)
    assert {v.version for v in store.host_states("prod").values()} == {"1.0.0"}  # the cohort is back
    assert {Users(nginx.port, []).ask(f"u{i}")[0] for i in range(100)} == {"1.0.0"}
    from releaser.status import status_document

    route = status_document(pipeline.config, store)["environments"]["prod"]["route"]
    assert route["applied"] is False  # status says the router did not take what releaser meant
    # once nginx -t passes again, `resume` (what status advises) puts the meant route live
    nginx.conf.write_text(nginx.conf.read_text().replace("worker_processes 1;\nbroken;", "worker_processes 1;"))
    from releaser.recovery import Recovery

    Recovery.like(pipeline).resume()
    stored = store.get_route("prod")
    assert stored["applied"] and route_in_file(nginx) == stored["route"]
    assert status_document(pipeline.config, store)["environments"]["prod"]["route"]["applied"] is True


def test_kill_during_a_route_change_then_resume_restores_a_consistent_route(shop):
    import os
    import subprocess

    pipeline, nginx, gate = shop
    store = pipeline.store
    gate.opened.set()
    pipeline.run("1.0.0")
    root = pipeline.config.base_dir
    # killed right after its second route change (the drain of the gray cohort) is stored and journaled
    killed = subprocess.run(
        [sys.executable, "-m", "releaser.cli", "-C", str(root), "-q", "promote", "1.1.0"],
        env={**os.environ, "RELEASER_FAILPOINT": "route.changing#2:KILL"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    assert store.get_route("prod")["applied"] is False  # journaled and stored, never confirmed
    resumed = subprocess.run(
        [sys.executable, "-m", "releaser.cli", "-C", str(root), "-q", "resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    stored = store.get_route("prod")
    assert stored["applied"] and route_in_file(nginx) == stored["route"]
    assert stored["route"]["drained"] == [] and stored["route"]["share"] == 10.0
    reapplied = [e for e in store.events() if e.kind == "route.changing" and "not confirmed" in e.message]
    assert len(reapplied) == 1
    versions = {Users(nginx.port, []).ask(f"user-{i}")[0] for i in range(300)}
    assert versions == {"1.0.0", "1.1.0"}  # gray by users again, on a router that matches the store
