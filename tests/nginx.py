"""A real nginx (Debian's package) on a loopback port, in a prefix of its own, in front of an
environment's hosts: the site's server block proxies to the variable releaser's route defines."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

SITE = """\
{user}pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    include {route};
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://${variable};
            proxy_next_upstream error timeout http_502;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Nginx:
    """nginx in `prefix`, listening on 127.0.0.1:`port`; `route` is the file releaser owns."""

    def __init__(self, prefix: Path, variable: str, first_route: str):
        self.prefix = prefix
        self.port = free_port()
        self.route = prefix / "releaser" / "route.conf"
        self.conf = prefix / "nginx.conf"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.route.parent.mkdir(parents=True, exist_ok=True)
        self.route.write_text(first_route)
        user = "user root root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(SITE.format(user=user, prefix=prefix, route=self.route, port=self.port, variable=variable))
        self.pid_file = prefix / "nginx.pid"

    @property
    def command(self) -> str:
        return f"{NGINX} -p {self.prefix} -c {self.conf}"

    def router_section(self, key: str = "{cookie: uid}", backend: str = "127.0.0.1:{PORT}", extra: str = "") -> str:
        """The `router:` section of an environment driving this nginx (YAML, indented for it)."""
        return (f"    router:\n      type: nginx\n      hosts: local\n      file: {self.route}\n"
                f"      pid_file: {self.pid_file}\n      test: {self.command} -t -q\n"
                f"      reload: {self.command} -s reload\n      key: {key}\n      backend: \"{backend}\"\n"
                f"      drain_timeout: 10s\n{extra}")

    def start(self) -> Nginx:
        subprocess.run([NGINX, "-p", str(self.prefix), "-c", str(self.conf)], check=True, capture_output=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"nginx did not listen on {self.port}: {(self.prefix / 'error.log').read_text()}")

    def stop(self) -> None:
        subprocess.run([NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-s", "stop"], capture_output=True)
