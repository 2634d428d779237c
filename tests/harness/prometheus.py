"""A real Prometheus server (Debian's package) on a loopback port, for tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import requests

from releaser.demo.ports import free_ports
from tests.harness.marks import needs

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class Prometheus:
    def __init__(
        self,
        base: Path,
        targets: list[str],
        interval: str = "1s",
        users: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
        extra_config: str = "",
    ):
        """`users`: name -> password required by basic auth on the HTTP API (none by default);
        `extra_config`: more of prometheus.yml (rule files, alerting)."""
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        quoted = ", ".join(f"'{t}'" for t in targets)
        (base / "prometheus.yml").write_text(
            f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
            f"scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [{quoted}]\n" + extra_config
        )
        self.auth = None
        self.args = []
        if users:
            import bcrypt

            hashed = {n: bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode() for n, p in users.items()}
            (base / "web.yml").write_text("basic_auth_users:\n" + "".join(f"  {n}: '{h}'\n" for n, h in hashed.items()))
            self.args = [f"--web.config.file={base / 'web.yml'}"]
            self.auth = next(iter(users.items()))
        self.args += list(extra_args)
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        needs("prometheus")
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={self.base / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.base / "prometheus.log", "ab"),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1, auth=self.auth).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start: {(self.base / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
