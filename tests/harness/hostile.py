"""Hostile servers on loopback that echo the credentials they are sent, and a whole run of
releaser against them with secrets planted in every variable a configuration can name.

`secret_scan(directory)` promotes two releases (the second fails on the hostile Prometheus and
is rolled back), posts notifications to webhooks that echo their URLs, and mails the effect
report through an SMTP server that echoes the AUTH exchange in its refusal. It returns every
byte releaser wrote (stdout, stderr, every file under the project, the hooks' environments)
and the forms of every secret, so a test or a benchmark can look for them.
"""

from __future__ import annotations

import base64
import json
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

from click.testing import CliRunner

from releaser import secrets
from releaser.cli import cli
from tests.harness.loopback import Loopback, QuietHandler
from tests.harness.tarballs import tar_gz


class EchoHttp(Loopback):
    """Prometheus's HTTP API while `healthy`, else errors that quote the request's
    Authorization header and URL; POSTs (webhooks) get a 500 quoting their URL."""

    def __init__(self):
        self.healthy = True
        self.requests: list[str] = []
        self.bodies: list[bytes] = []  # what releaser POSTed: part of what it wrote
        server = self

        class Handler(QuietHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if server.healthy and self.path.startswith("/api/v1/query_range"):
                    self._json(200, {"status": "success", "data": {"resultType": "matrix", "result": []}})
                elif server.healthy:
                    self._json(200, {"status": "success", "data": {"resultType": "scalar", "result": [0, "0"]}})
                else:
                    self._json(
                        400,
                        {
                            "status": "error",
                            "errorType": "bad_data",
                            "error": f"token {self.headers.get('Authorization')} refused for {self.path}",
                        },
                    )

            def do_POST(self):
                server.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                server.requests.append(self.path)
                self._json(500, {"error": f"cannot deliver to {self.path}", "headers": dict(self.headers)})

            def _json(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


class EchoSmtp:
    """Accepts any AUTH with a reply that quotes the credentials; in its first session refuses
    MAIL FROM quoting them again, encoded and decoded; later sessions take the mail."""

    def __init__(self):
        self.sessions = 0

        class Handler(socketserver.StreamRequestHandler):
            def handle(handler):
                self.sessions += 1
                heard: list[str] = []

                def say(line: str) -> None:
                    handler.wfile.write(line.encode() + b"\r\n")

                say("220 echo ESMTP")
                while line := handler.rfile.readline():
                    command = line.decode(errors="replace").strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        say("250-echo")
                        say("250 AUTH PLAIN LOGIN")
                    elif verb == "AUTH":
                        method = command.split()[1].upper()
                        prompts = ["334 "] if method == "PLAIN" else ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"]
                        for prompt in prompts:
                            say(prompt)
                            heard.append(handler.rfile.readline().decode().strip())
                        say(f"235 2.7.0 welcome {' '.join(heard)}")
                    elif verb == "MAIL" and self.sessions == 1:
                        decoded = " ".join(base64.b64decode(h + "==").decode(errors="replace") for h in heard)
                        say(f"550 5.7.1 {' '.join(heard)} ({decoded!r}) may not send")
                    elif verb == "DATA":
                        say("354 go on")
                        while handler.rfile.readline() not in (b".\r\n", b""):
                            pass
                        say(f"250 2.0.0 queued for {' '.join(heard)}")
                    elif verb == "QUIT":
                        say("221 bye")
                        return
                    else:
                        say("250 ok")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


PLAYBOOK = """\
hooks:
  prepare: env > "$RELEASER_ROOT/shared/env-prepare"
  restart: |
    env > "$RELEASER_ROOT/shared/env-restart"
    echo "$RELEASER_RELEASE" > "$RELEASER_ROOT/shared/running"
  verify: test "$(cat REVISION)" = "$RELEASER_RELEASE"
  version: cat "$RELEASER_ROOT/shared/running"
"""
CHECKS = """\
checks:
  - name: errors
    type: threshold
    query: 'sum(rate(http_requests_total{code=~"5..", instance=~"$instances"}[1m]))'
    max: 1
  - name: env
    type: command
    command: env > {root}/shared/env-check
"""
CONFIG = """\
project: shop
environments:
  dev:
    transport: local
    playbook: app
    hosts: [dev-1]
  test:
    transport: local
    playbook: app
    metrics: {{source: prometheus, url: "{prometheus}", username_env: PROM_USER, password_env: PROM_PASSWORD}}
    hosts: [test-1]
  prod:
    transport: local
    playbook: app
    metrics: {{source: prometheus, url: "{prometheus}", bearer_env: PROM_TOKEN}}
    report_to: [am@example.org]
    hosts: [web-1, web-2]
pipeline:
  - {{stage: selftest, environment: dev, bake: 200ms, interval: 100ms}}
  - {{stage: test, environment: test, checks: [hostile], bake: 300ms, interval: 100ms}}
  - {{stage: full, environment: prod, checks: [hostile], bake: 300ms, interval: 100ms}}
notifications:
  webhooks:
    - {{url_env: HOOK_URL}}
    - {{url_env: DEAD_HOOK_URL, timeout: 1s}}
report:
  delay: 0s
  window: 1h
  metrics: {{requests: http_requests_total}}
  mail: {{smtp: "127.0.0.1:{smtp}", security: none, from: releases@example.org, username_env: SMTP_USER,
          password_env: SMTP_PASSWORD, timeout: 5s}}
  webhook: {{url_env: REPORT_HOOK_URL}}
"""


@dataclass
class Scan:
    """What releaser wrote during a run, and the secrets to look for in it."""

    written: dict[str, bytes] = field(default_factory=dict)  # where -> bytes
    forms: dict[str, str] = field(default_factory=dict)  # form name -> text that must not appear
    exit_codes: list[int] = field(default_factory=list)
    http_requests: list[str] = field(default_factory=list)  # paths the hostile HTTP server was asked
    smtp_sessions: int = 0

    def leaks(self) -> list[str]:
        return [
            f"{name} in {where}"
            for where, data in self.written.items()
            for name, form in self.forms.items()
            if form.encode() in data
        ]


def planted(echo_url: str) -> dict[str, str]:
    """A secret in every variable the configuration names, with characters that URLs encode."""
    return {
        "PROM_TOKEN": "tok_Zx9/+Q=Kv2#wq~",
        "PROM_USER": "metrics-reader",
        "PROM_PASSWORD": "pw:Gh7&y%u/8+Lm",
        "SMTP_USER": "mailer@example.org",
        "SMTP_PASSWORD": "Sm7p!Pa$$/w+rd=9",
        "HOOK_URL": f"{echo_url}/services/T0A1/B0B2/hkQ9zR8xW7?token=Qs8t/xY+z=",
        "DEAD_HOOK_URL": f"http://127.0.0.1:{_closed_port()}/services/T9/B9/deadTok3n4bc",
        "REPORT_HOOK_URL": f"{echo_url}/reports/rp-Tk5~zQ?sig=Ab/Cd+Ef=",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCY",  # releaser's, never named: hooks must not get it
    }


def forms_of(values: dict[str, str]) -> dict[str, str]:
    """Every form a planted secret could take in output."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    raw = {
        "PROM_TOKEN": values["PROM_TOKEN"],
        "PROM_PASSWORD": values["PROM_PASSWORD"],
        "SMTP_PASSWORD": values["SMTP_PASSWORD"],
        "AWS_SECRET_ACCESS_KEY": values["AWS_SECRET_ACCESS_KEY"],
        "HOOK_URL path": "hkQ9zR8xW7",
        "HOOK_URL query": "Qs8t/xY+z=",
        "DEAD_HOOK_URL path": "deadTok3n4bc",
        "REPORT_HOOK_URL path": "rp-Tk5~zQ",
        "REPORT_HOOK_URL query": "Ab/Cd+Ef=",
    }
    forms: dict[str, str] = {}
    for name, value in raw.items():
        forms[name] = value
        forms[f"{name} url-encoded"] = quote(value, safe="")
        forms[f"{name} form-encoded"] = quote_plus(value)
        forms[f"{name} base64"] = b64(value)
    for user, password in (("PROM_USER", "PROM_PASSWORD"), ("SMTP_USER", "SMTP_PASSWORD")):
        forms[f"{user}:{password} base64"] = b64(f"{values[user]}:{values[password]}")
        forms[f"{user}/{password} AUTH PLAIN"] = b64(f"\0{values[user]}\0{values[password]}")
    return forms


def _artifact(path: Path, version: str) -> Path:
    path.write_bytes(tar_gz({"app.txt": f"app {version}\n"}))
    return path


def secret_scan(directory: Path) -> Scan:
    """Run releaser against the hostile servers with planted secrets; what it wrote."""
    echo, smtp = EchoHttp(), EchoSmtp()
    values = planted(echo.url)
    scan = Scan(forms=forms_of(values))
    project = directory / "project"
    (project / "playbooks").mkdir(parents=True)
    (project / "healthchecks").mkdir()
    (project / "playbooks" / "app.yaml").write_text(PLAYBOOK)
    (project / "healthchecks" / "hostile.yaml").write_text(CHECKS)
    (project / "environments.yaml").write_text(CONFIG.format(prometheus=echo.url, smtp=smtp.port))
    config = str(project / "environments.yaml")
    runner = CliRunner(env={**values, "NO_COLOR": "1", "RELEASER_FAILPOINT": None})

    def invoke(*args: str) -> None:
        result = runner.invoke(cli, ["-c", config, *args])
        scan.exit_codes.append(result.exit_code)
        scan.written[f"releaser {' '.join(args)} (stdout)"] = result.stdout.encode()
        scan.written[f"releaser {' '.join(args)} (stderr)"] = result.stderr.encode()
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception

    try:
        for version in ("1.0.0", "1.1.0"):
            invoke("release", "create", version, "--artifact", str(_artifact(directory / f"{version}.tgz", version)))
        invoke("run", "1.0.0", "--json")  # healthy metrics: passes every stage; its report is due at once
        echo.healthy = False
        invoke("run", "1.1.0", "--json")  # the checks see the hostile errors: fails safe, rolled back
        invoke("report", "1.0.0", "--send", "--json")  # hostile metrics; the SMTP server refuses, echoing AUTH
        invoke("report", "1.0.0", "--send", "--json")  # sent this time; the report's webhook gets it
        invoke("report", "1.0.0", "--format", "md")
        invoke("status", "--json")
        invoke("status")
        invoke("history", "--json")
        invoke("history")
    finally:
        scan.http_requests, scan.smtp_sessions = list(echo.requests), smtp.sessions
        for number, body in enumerate(echo.bodies):
            scan.written[f"POST #{number + 1} to a webhook"] = body
        echo.close()
        smtp.close()
        secrets.forget_all()  # this process registered the planted values
    for path in sorted(project.rglob("*")):
        if path.is_file() and not path.is_symlink():
            scan.written[str(path.relative_to(directory))] = path.read_bytes()
    return scan
