"""A real nginx (Debian's package) in a prefix of its own on a loopback port, in front of an
environment of the sandbox: the site's server block proxies to the variable releaser's route
defines. The demo puts one in front of prod when nginx is installed; the tests do too."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .ports import free_ports

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


def nginx_binary() -> str | None:
    """Debian's nginx is in /usr/sbin, which a non-root PATH may lack."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


class SandboxNginx:
    """nginx in `prefix`, listening on 127.0.0.1:`port`; `route` is the file releaser owns."""

    def __init__(self, prefix: Path, variable: str, binary: str, port: int | None = None):
        self.prefix, self.binary = prefix, binary
        self.port = port or free_ports(1)[0]
        self.route = prefix / "releaser" / "route.conf"
        self.conf = prefix / "nginx.conf"
        self.pid_file = prefix / "nginx.pid"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.route.parent.mkdir(parents=True, exist_ok=True)
        user = "user root root;\n" if os.geteuid() == 0 else ""  # workers may read what root wrote
        self.conf.write_text(SITE.format(user=user, prefix=prefix, route=self.route, port=self.port, variable=variable))

    @property
    def command(self) -> str:
        return f"{self.binary} -p {self.prefix} -c {self.conf}"

    def router_section(self, key: str = "{cookie: uid}", backend: str = "127.0.0.1:{PORT}") -> str:
        """The `router:` section of an environment driving this nginx (YAML, indented for it)."""
        return (
            f"    router:                  # nginx in front of the environment: gray by users, drained switches\n"
            f"      type: nginx\n      hosts: local\n      file: {self.route}\n"
            f"      pid_file: {self.pid_file}\n      test: {self.command} -t -q\n"
            f'      reload: {self.command} -s reload\n      key: {key}\n      backend: "{backend}"\n'
            f"      drain_timeout: 10s\n"
        )

    def start(self, first_route: str) -> SandboxNginx:
        """Start nginx with `first_route` as the file releaser owns (nginx needs one to start)."""
        self.route.write_text(first_route)
        subprocess.run([self.binary, "-p", str(self.prefix), "-c", str(self.conf)], check=True, capture_output=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"nginx did not listen on {self.port}: {(self.prefix / 'error.log').read_text()}")

    def stop(self) -> None:
        subprocess.run([self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-s", "stop"], capture_output=True)
