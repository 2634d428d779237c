"""The demo app: one HTTP server per host, behaving as its release's app.json says.

    /health   200 "ok" while the recent error ratio stays under 5%, else 503 "degraded"
    /metrics  Prometheus metrics (prometheus_client)
    /api/...  the app's endpoints; a release may fail a share of requests on some paths

Run as `python -m releaser.demo.app --root HOST_ROOT --port PORT`; it reads
HOST_ROOT/current/app.json once at start, as a real app reads its build (without one, as the
placeholder app of `releaser init`: its version from REVISION, every request served well).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

HEALTH_WINDOW = 40
HEALTH_MIN_REQUESTS = 10
HEALTH_MAX_ERROR_RATIO = 0.05


class AppState:
    def __init__(self, behaviour: dict):
        self.version = str(behaviour.get("version", "unknown"))
        self.failures: dict[str, float] = behaviour.get("failures", {})
        self.latency = float(behaviour.get("latency_ms", 5)) / 1000
        self.features: dict[str, str] = behaviour.get("features", {})  # path -> feature name
        self.recent: deque[bool] = deque(maxlen=HEALTH_WINDOW)
        self.lock = threading.Lock()
        self.registry = CollectorRegistry()
        self.requests = Counter("demo_http_requests", "Requests served", ["path", "code"], registry=self.registry)
        self.latency_seconds = Histogram(
            "demo_http_request_duration_seconds",
            "Request latency",
            ["path"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.feature_use = Counter("demo_feature_used", "Feature usage", ["feature"], registry=self.registry)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, for the effect report
        Gauge("demo_app_info", "The running release", ["version"], registry=self.registry).labels(self.version).set(1)

    def healthy(self) -> bool:
        with self.lock:
            if len(self.recent) < HEALTH_MIN_REQUESTS:
                return True
            return sum(self.recent) / len(self.recent) <= HEALTH_MAX_ERROR_RATIO

    def serve(self, path: str) -> int:
        started = time.monotonic()
        time.sleep(self.latency * random.lognormvariate(0, 0.3))
        failed = random.random() < self.failures.get(path, 0.0)
        code = 500 if failed else 200
        with self.lock:
            self.recent.append(failed)
        if path in self.features and not failed:
            self.feature_use.labels(self.features[path]).inc()
        self.requests.labels(path, str(code)).inc()
        self.latency_seconds.labels(path).observe(time.monotonic() - started)
        return code


def make_handler(state: AppState):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/health":
                ok = state.healthy()
                self._reply(200 if ok else 503, f"{'ok' if ok else 'degraded'} {state.version}\n".encode())
            elif path == "/metrics":
                self._reply(200, generate_latest(state.registry), CONTENT_TYPE_LATEST)
            elif path.startswith("/api/"):
                code = state.serve(path)
                self._reply(
                    code, json.dumps({"version": state.version, "ok": code == 200}).encode(), "application/json"
                )
            else:
                self._reply(404, b"not found\n")

        def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--bind", default="127.0.0.1")
    args = parser.parse_args()
    build = args.root / "current"
    behaviour = (
        json.loads((build / "app.json").read_text())
        if (build / "app.json").exists()
        else {"version": (build / "REVISION").read_text().strip() if (build / "REVISION").exists() else "unknown"}
    )
    server = ThreadingHTTPServer((args.bind, args.port), make_handler(AppState(behaviour)))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main()
