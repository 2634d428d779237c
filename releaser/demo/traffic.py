"""Synthetic users: a steady stream of requests to every sandbox host while the demo runs."""

from __future__ import annotations

import http.client
import random
import threading
import time

# Only production users place batch orders: the path a bad release breaks.
PROD_PATHS = (("/api/items", 0.6), ("/api/orders/batch", 0.4))
OTHER_PATHS = (("/api/items", 1.0),)


USERS = 1000  # distinct users of an environment behind a router, each with its cookie


class Traffic:
    """One thread per environment sending `rate` requests per second to each of its hosts, on
    `paths` (weighted) per environment: by default only prod's users place batch orders. An
    environment in `routed` (its router's port) gets as many requests through the router, each
    from one of USERS users known by a `uid` cookie."""

    def __init__(
        self,
        targets: dict[str, list[int]],
        rate: float = 10.0,
        paths: dict[str, tuple[tuple[str, float], ...]] | None = None,
        routed: dict[str, int] | None = None,
    ):
        self.targets, self.rate, self.routed = targets, rate, routed or {}
        self.paths = {env: PROD_PATHS if env == "prod" else OTHER_PATHS for env in targets} | (paths or {})
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(env, ports), name=f"traffic-{env}", daemon=True)
            for env, ports in targets.items()
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _loop(self, env: str, ports: list[int]) -> None:
        pause = 1.0 / self.rate
        router = http.client.HTTPConnection("127.0.0.1", self.routed[env], timeout=2) if env in self.routed else None
        while not self._stop.is_set():
            started = time.monotonic()
            paths = self.paths[env]  # read at every round: a test may change what users do
            names, weights = [p for p, _ in paths], [w for _, w in paths]
            for port in ports:
                path = random.choices(names, weights)[0]
                if router is not None:  # one kept-alive connection, as a browser keeps one
                    _ask(router, path, f"uid=user-{random.randrange(USERS)}")
                else:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
                    _ask(conn, path)
                    conn.close()
            self._stop.wait(max(0.0, pause - (time.monotonic() - started)))
        if router is not None:
            router.close()


def _ask(conn: http.client.HTTPConnection, path: str, cookie: str | None = None) -> None:
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        conn.close()  # a host restarting, or nginx closing an idle connection: the next request reconnects
