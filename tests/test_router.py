"""The router: routes in words and in nginx's terms (pure), then a real nginx (Debian's) on a
loopback port in front of backends that answer with their host's name."""

from __future__ import annotations

import http.client
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from releaser.fleet import Fleet
from releaser.journal import Journal
from releaser.model import Environment, Host, RouterSpec
from releaser.router.keeper import RouteKeeper, RouteRefused
from releaser.router.nginx import NginxRouter, variable
from releaser.router.route import Route
from releaser.store import SqliteStore
from releaser.transport.local import LocalTransport
from tests.harness.marks import starts
from tests.harness.nginx import nginx_in

HOSTS = [f"web-{i}" for i in range(1, 11)]


def environment(ports: dict[str, int], spec: RouterSpec) -> Environment:
    hosts = tuple(Host(name, "127.0.0.1", "/tmp", vars={"PORT": str(port)}) for name, port in ports.items())
    return Environment("prod", "local", "app", hosts, router=spec)


# -- pure --


def test_sides_and_effective_share():
    route = Route("1.1.0", new=("web-1",), share=10.0)
    assert route.sides(HOSTS) == (HOSTS[1:], ["web-1"])
    assert route.effective_share(HOSTS) == 10.0
    assert Route("1.1.0", new=("web-1",), drained=("web-1",), share=10.0).effective_share(HOSTS) == 0.0  # nobody there
    assert Route("1.1.0", new=tuple(HOSTS), share=10.0).effective_share(HOSTS) == 100.0  # nobody on the stable side
    assert Route("1.1.0", new=("web-1", "web-2"), share=None).effective_share(HOSTS) == 20.0  # by capacity
    assert (
        Route("1.1.0", new=("web-1",), share=10.0, allow=("qa",)).describe(HOSTS)
        == "10% of users (and 1 allowed key) to 1.1.0 on 1 host, the rest on 9 hosts"
    )
    assert Route().describe(HOSTS) == "every user to the stable side (10 hosts)"
    assert Route.from_dict(Route("1", ("a",), ("b",), None, ("k",)).to_dict()) == Route(
        "1", ("a",), ("b",), None, ("k",)
    )


def test_nginx_file_for_a_split():
    spec = RouterSpec("nginx", (), "/etc/nginx/releaser/prod.conf", "127.0.0.1:{PORT}", ("cookie", "uid"))
    env = environment({name: 8000 + i for i, name in enumerate(HOSTS[:3], 1)}, spec)
    text = NginxRouter(spec, env).render(
        Route("1.1.0", new=("web-1",), drained=("web-3",), share=12.5, allow=("default", "~x.*"))
    )
    assert "upstream releaser_prod_new {\n    server 127.0.0.1:8001;\n}" in text
    assert "    server 127.0.0.1:8003 down;" in text  # drained, still listed
    assert 'split_clients "${releaser_prod_key}1.1.0" $releaser_prod_split {\n    12.5% releaser_prod_new;' in text
    assert (
        '    "kdefault" releaser_prod_new;' in text and '    "k~x.*" releaser_prod_new;' in text
    )  # never keywords or regexes
    assert '    "k" releaser_prod_stable;' in text  # no key: the stable side
    assert "map $cookie_uid $releaser_prod_key" in text
    one_side = NginxRouter(spec, env).render(Route("1.1.0", share=10.0))
    assert "releaser_prod_new" not in one_side and "default releaser_prod_stable;" in one_side
    assert variable("prod-eu.1") == "releaser_prod_eu_1"


# -- a real nginx --


class Backends:
    """One HTTP server per host, answering its host's name; `hold` makes /slow wait for `release`."""

    def __init__(self, names: list[str]):
        self.release = threading.Event()
        self.arrived = threading.Semaphore(0)
        self.servers = {}
        backends = self
        for name in names:

            class Handler(BaseHTTPRequestHandler):
                host = name

                def do_GET(self):
                    if self.path == "/slow":
                        backends.arrived.release()
                        backends.release.wait(30)
                    body = self.host.encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *args):
                    pass

            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers[name] = server

    @property
    def ports(self) -> dict[str, int]:
        return {name: server.server_address[1] for name, server in self.servers.items()}

    def close(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


@pytest.fixture
@starts("nginx")
def lab(tmp_path):
    backends = Backends(HOSTS)
    nginx = nginx_in(tmp_path / "nginx", variable("prod"))
    spec = RouterSpec(
        "nginx",
        (),
        str(nginx.route),
        "127.0.0.1:{PORT}",
        ("cookie", "uid"),
        "stable",
        f"{nginx.command} -t -q",
        f"{nginx.command} -s reload",
        str(nginx.pid_file),
        10.0,
    )
    env = environment(backends.ports, spec)
    nginx.start(NginxRouter(spec, env).render(Route()))
    store = SqliteStore(tmp_path / "state.db")
    fleet = Fleet(env, LocalTransport(env))
    keeper = RouteKeeper(env, store, Journal(store), fleet)
    yield keeper, nginx, backends
    nginx.stop()
    backends.close()
    store.close()


def ask(port: int, user: str | None = None, path: str = "/") -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Cookie": f"uid={user}"} if user else {})
        response = conn.getresponse()
        assert response.status == 200, response.read()
        return response.read().decode()
    finally:
        conn.close()


def test_users_split_by_a_sticky_hash_with_an_allow_list(lab):
    keeper, nginx, _ = lab
    keeper.change(Route("1.1.0", new=("web-1",), share=1.0), "step 1")
    users = [f"user-{i}" for i in range(2000)]
    with ThreadPoolExecutor(4) as pool:
        at_one = {
            user
            for user, host in zip(users, pool.map(lambda u: ask(nginx.port, u), users), strict=False)
            if host == "web-1"
        }
    keeper.change(Route("1.1.0", new=("web-1",), share=10.0, allow=("qa-1", "pilot-customer")), "step 2")
    with ThreadPoolExecutor(4) as pool:
        seen = dict(zip(users, pool.map(lambda u: ask(nginx.port, u), users), strict=False))
    at_ten = {user for user, host in seen.items() if host == "web-1"}
    assert 8.5 <= 100 * len(at_ten) / len(users) <= 11.5, len(at_ten)
    assert 0 < len(at_one) < len(at_ten) and at_one <= at_ten  # a larger step only adds users to the new side
    for user in users[:300]:  # sticky: the same side request after request
        assert (ask(nginx.port, user) == "web-1") == (user in at_ten)
    assert ask(nginx.port, "qa-1") == ask(nginx.port, "pilot-customer") == "web-1"
    assert {ask(nginx.port) for _ in range(50)} <= set(HOSTS[1:])  # no key: the stable side
    events = [e.kind for e in keeper.store.events()]
    assert events.count("route.changing") == events.count("route.changed") == 2
    assert keeper.applied() and keeper.route().share == 10.0


def test_to_stable_sends_every_user_back_in_one_change(lab):
    keeper, nginx, _ = lab
    keeper.change(Route("1.1.0", new=("web-1", "web-2"), share=50.0, allow=("qa-1",)), "half")
    assert "web-1" in {ask(nginx.port, f"u{i}") for i in range(100)}
    assert keeper.to_stable("the canary failed")
    assert {ask(nginx.port, f"u{i}") for i in range(300)} | {ask(nginx.port, "qa-1")} <= set(HOSTS[2:])
    changed = [e for e in keeper.store.events() if e.kind == "route.changed"][-1]
    assert changed.data["route"]["share"] == 0.0 and changed.data["live_ms"] < 10_000


def test_a_drained_host_gets_no_new_request_and_the_drain_waits_for_its_last_one(lab):
    keeper, nginx, backends = lab
    keeper.change(Route(), "start")
    held = {}
    slow = threading.Thread(target=lambda: held.setdefault("host", ask(nginx.port, "slow-user", "/slow")))
    slow.start()
    assert backends.arrived.acquire(timeout=10)
    draining = threading.Thread(target=keeper.drain, args=(HOSTS[:9],))  # every host but web-10
    draining.start()
    draining.join(timeout=2)
    assert draining.is_alive()  # it waits for the request in flight under the old route
    backends.release.set()
    draining.join(timeout=30)
    slow.join(timeout=10)
    assert not draining.is_alive() and held["host"] in HOSTS
    assert {ask(nginx.port, f"u{i}") for i in range(100)} == {"web-10"}  # the one host left in rotation
    changed = [e for e in keeper.store.events() if e.kind == "route.changed"][-1]
    assert changed.data["route"]["drained"] == HOSTS[:9] and not changed.data["drain_unfinished"]


def test_a_route_the_configuration_test_refuses_changes_nothing(lab):
    keeper, nginx, _ = lab
    keeper.change(Route("1.1.0", new=("web-1",), share=10.0), "before")
    before = nginx.route.read_text()
    nginx.conf.write_text(nginx.conf.read_text().replace("worker_processes 1;", "worker_processes 1;\nbroken;"))
    with pytest.raises(RouteRefused, match="configuration test refused"):
        keeper.change(Route("1.1.0", new=("web-1",), share=50.0), "after")
    assert nginx.route.read_text() == before  # the previous file is back
    assert not keeper.applied()  # resume will try again
    sides = {ask(nginx.port, f"user-{i}") for i in range(200)}
    assert "web-1" in sides and len(sides) > 2  # nginx still runs the earlier route
    failed = [e for e in keeper.store.events() if e.kind == "route.failed"]
    assert failed and "broken" in failed[0].message


@pytest.mark.nginx
def test_a_router_reached_over_ssh_takes_its_route(ssh_fleet, tmp_path):
    """The router's host is reached like the environment's hosts: over real sshd (here the
    sshd host is this machine, so its nginx is the one the test started)."""
    from releaser.transport.ssh import SshTransport

    ssh_fleet.heal()
    options = ssh_fleet.options()
    backends = Backends(HOSTS)
    nginx = nginx_in(tmp_path / "nginx", variable("prod"))
    router_host = Host("lb-1", ssh_fleet.addresses[0], "/", ssh=options)
    spec = RouterSpec(
        "nginx",
        (router_host,),
        str(nginx.route),
        "127.0.0.1:{PORT}",
        ("header", "X-User"),
        "stable",
        f"{nginx.command} -t -q",
        f"{nginx.command} -s reload",
        str(nginx.pid_file),
        10.0,
    )
    hosts = tuple(
        Host(name, "127.0.0.1", "/tmp", vars={"PORT": str(port)}, ssh=options) for name, port in backends.ports.items()
    )
    env = Environment("prod", "ssh", "app", hosts, router=spec)
    nginx.start(NginxRouter(spec, env).render(Route()))
    store = SqliteStore(tmp_path / "state.db")
    fleet = Fleet(env, SshTransport(env))
    try:
        keeper = RouteKeeper(env, store, Journal(store), fleet)
        keeper.change(Route("1.1.0", new=("web-1",), share=20.0), "over ssh")

        def by_header(user: str) -> str:
            conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
            conn.request("GET", "/", headers={"X-User": user})
            return conn.getresponse().read().decode()

        share = sum(by_header(f"user-{i}") == "web-1" for i in range(1000)) / 10
        assert 16.5 <= share <= 23.5, share
        changed = [e for e in store.events() if e.kind == "route.changed"]
        assert len(changed) == 1 and keeper.applied()
    finally:
        fleet.close()
        nginx.stop()
        backends.close()
        store.close()


def test_without_nginx_pid_the_route_is_reloaded_and_said_unconfirmed(lab, tmp_path):
    keeper, _nginx, _ = lab
    from dataclasses import replace

    env = replace(keeper.env, router=replace(keeper.spec, pid_file=str(tmp_path / "no-such.pid")))
    blind = RouteKeeper(env, keeper.store, keeper.journal, keeper.fleet)
    blind.change(Route("1.1.0", new=("web-1",), share=100.0), "no pid file")
    changed = [e for e in keeper.store.events() if e.kind == "route.changed"][-1]
    assert "not confirmed live" in changed.message and changed.data["unconfirmed"]
    assert blind.applied()
