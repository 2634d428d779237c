"""Real parts of image releases: a container registry (Debian's docker-registry) on a loopback
port, images built with podman from a static test app and pushed there, and per-host podman
configuration, each host with its own image and container storage, as separate as real hosts.

Podman on these machines needs cgroupfs, runc and no default ulimits (containers.conf)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from pathlib import Path

import bcrypt
import requests

from releaser.demo.ports import free_ports
from tests.harness.marks import needs
from tests.harness.smtp import self_signed

# The test app: answers /ready (200 once listening), /version (its VERSION), /health (200 "ok
# VERSION", or 500 when its NAME starts with the image's SICK_ON or the file /shared/SICK exists:
# a release that turns bad after it passed), on ADDR:PORT; ends on SIGTERM (as PID 1 it must ask).
APP_C = r"""
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
static void bye(int s) { (void)s; _exit(0); }
static const char *env(const char *k, const char *d) { const char *v = getenv(k); return v && *v ? v : d; }
int main(void) {
  signal(SIGTERM, bye);
  signal(SIGINT, bye);
  if (*env("CRASH", "")) { fprintf(stderr, "crashing as asked\n"); return 3; }
  const char *version = env("VERSION", "?"), *sick = env("SICK_ON", ""), *name = env("NAME", "");
  int sick_here = *sick && strncmp(name, sick, strlen(sick)) == 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(atoi(env("PORT", "8080")));
  inet_pton(AF_INET, env("ADDR", "127.0.0.1"), &sa.sin_addr);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 64)) { perror("bind"); return 1; }
  printf("serving %s on %s:%s\n", version, env("ADDR", "127.0.0.1"), env("PORT", "8080"));
  fflush(stdout);
  for (;;) {
    int c = accept(fd, 0, 0);
    if (c < 0) continue;
    char req[1024] = {0}, body[256], out[512];
    if (read(c, req, sizeof req - 1) < 0) { close(c); continue; }
    int asked_version = strncmp(req, "GET /version", 12) == 0;
    int ok = asked_version || strncmp(req, "GET /ready", 10) == 0 || (!sick_here && access("/shared/SICK", F_OK) != 0);
    int n = asked_version ? snprintf(body, sizeof body, "%s\n", version)
                          : snprintf(body, sizeof body, "%s %s\n", ok ? "ok" : "sick", version);
    n = snprintf(out, sizeof out, "HTTP/1.0 %s\r\nContent-Length: %d\r\n\r\n%s", ok ? "200 OK" : "500 Sick", n, body);
    if (write(c, out, n) < 0) { }
    close(c);
  }
}
"""


def podman_conf(directory: Path) -> dict[str, str]:
    """Host vars that give one host its own podman: containers.conf and storage.conf under
    `directory` (its storage, run state and event log there too)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "containers.conf").write_text(
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'runtime = "runc"\n'
        f'tmp_dir = "{directory}/tmp"\n'
        "[containers]\n"
        "default_ulimits = []\n"
    )
    (directory / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{directory}/graph"\nrunroot = "{directory}/run"\n'
    )
    return {
        "CONTAINERS_CONF": str(directory / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(directory / "storage.conf"),
    }


def podman(host_vars: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run podman as a host with these vars would."""
    return subprocess.run(
        ["podman", *args], env={**os.environ, **host_vars}, capture_output=True, text=True, timeout=120, check=check
    )


def stop_all(host_vars: dict[str, str]) -> None:
    podman(host_vars, "rm", "-f", "-a", "-t", "1", check=False)


class Registry:
    """docker-registry serving on 127.0.0.1, its storage in `directory`: plain HTTP, or with
    `secure` TLS (a self-signed certificate, `self.ca`) and a user and password (htpasswd)."""

    def __init__(self, directory: Path, secure: bool = False):
        needs("podman")
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        self.ca: Path | None = None
        self.user, self.password = "pusher", "reg-PW-7788-secret"
        http = f"addr: {self.address}"
        auth = ""
        if secure:
            self.ca, key = self_signed(directory)
            http += f", tls: {{certificate: {self.ca}, key: {key}}}"
            hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
            (directory / "htpasswd").write_text(f"{self.user}:{hashed}\n")
            auth = f"auth: {{htpasswd: {{realm: test, path: {directory / 'htpasswd'}}}}}\n"
        config = directory / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: info, accesslog: {disabled: false}}\n"
            f"storage: {{filesystem: {{rootdirectory: {directory}/data}}, delete: {{enabled: true}}}}\n"
            f"http: {{{http}}}\n" + auth
        )
        self.log = directory / "registry.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
        self.builder = podman_conf(directory / "builder")
        deadline = time.monotonic() + 30
        scheme = "https" if secure else "http"
        while True:
            try:
                if requests.get(f"{scheme}://{self.address}/v2/", timeout=1, verify=self.ca or True).status_code in (
                    200,
                    401,
                ):
                    break
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not start")
            time.sleep(0.05)

    def push(self, name: str, tag: str, version: str, sick_on: str = "", pad: int = 0, crash: bool = False) -> str:
        """Build the test app as REGISTRY/name:tag (VERSION baked in; sick on hosts whose name
        starts with `sick_on`; `crash`: it exits at start; `pad` bytes of filler to reach a
        size) and push it."""
        context = self.builder_dir / f"{name}-{tag}"
        context.mkdir(parents=True, exist_ok=True)
        shutil.copy(_app_binary(), context / "app")
        lines = [
            "FROM scratch",
            "COPY app /app",
            f"ENV VERSION={version} SICK_ON={sick_on} CRASH={'1' if crash else ''}",
        ]
        if pad:
            (context / "pad").write_bytes(os.urandom(pad))
            lines.append("COPY pad /pad")
        (context / "Containerfile").write_text("\n".join([*lines, 'ENTRYPOINT ["/app"]', ""]))
        reference = f"{self.address}/{name}:{tag}"
        podman(self.builder, "build", "-q", "-t", reference, str(context))
        podman(self.builder, "push", "-q", "--tls-verify=false", *self.creds(), reference)
        return reference

    def creds(self) -> list[str]:
        return ["--creds", f"{self.user}:{self.password}"] if self.ca else []

    def manifest_fetches(self, reference: str) -> int:
        """How many times a client fetched the manifest `reference` (name@digest) names: a pull."""
        name, _, digest = reference.partition("/")[2].partition("@")
        wanted = f"GET /v2/{name}/manifests/{digest} "
        return sum(wanted in line for line in self.log.read_text(errors="replace").splitlines())

    @property
    def builder_dir(self) -> Path:
        return Path(self.builder["CONTAINERS_CONF"]).parent

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@functools.cache
def _app_binary() -> Path:
    """The test app, compiled once per test process (static: the image holds nothing else)."""
    directory = Path(os.environ.get("TMPDIR", "/tmp")) / f"releaser-test-app-{os.getpid()}"
    directory.mkdir(exist_ok=True)
    (directory / "app.c").write_text(APP_C)
    subprocess.run(
        ["gcc", "-static", "-O1", "-o", str(directory / "app"), str(directory / "app.c")], check=True, timeout=120
    )
    return directory / "app"
