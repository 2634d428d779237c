"""Single sign-on as the README sets it up: a real nginx in front of `releaser serve`, asking an
authenticating service (auth_request, as oauth2-proxy answers it) who the user is and passing
the name in a header; releaser believes that header from the proxy's address only, with its
secret. Seen from Chromium too: signed in through the proxy, refused when the header comes
straight to the dashboard."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from releaser.demo.nginx import nginx_binary
from releaser.demo.ports import free_ports
from tests.harness.configs import write_project
from tests.harness.loopback import Loopback, QuietHandler

pytestmark = [pytest.mark.nginx, pytest.mark.real]

SERVE_AT = "127.0.0.2"  # the dashboard's address; nginx reaches it from 127.0.0.1 (proxy.from)
SECRET = "a dashboard secret of at least thirty-two characters"
PROXY_SECRET = "what only nginx knows here"

NGINX = """\
{user}pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    server {{
        listen 127.0.0.1:{port};
        location = /oauth2/auth {{
            internal;
            proxy_pass http://127.0.0.1:{auth}/;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location / {{
            auth_request /oauth2/auth;
            auth_request_set $user $upstream_http_x_auth_request_user;
            proxy_set_header X-Forwarded-User $user;
            proxy_set_header X-Releaser-Proxy "{proxy_secret}";
            proxy_bind 127.0.0.1;
            proxy_pass http://{serve}:{dashboard};
            proxy_buffering off;
        }}
    }}
}}
"""


class SignOn(Loopback):
    """The authenticating service: a `sso` cookie names a signed-in user, nothing else does."""

    def __init__(self):
        class Handler(QuietHandler):
            def do_GET(self):
                cookies = dict(
                    part.strip().split("=", 1) for part in (self.headers.get("Cookie") or "").split(";") if "=" in part
                )
                user = cookies.get("sso")
                self.send_response(200 if user else 401)
                if user:
                    self.send_header("X-Auth-Request-User", user)
                self.end_headers()

        super().__init__(Handler)


@pytest.fixture
def proxied(tmp_path: Path):
    write_project(tmp_path / "proj")
    config = tmp_path / "proj" / "environments.yaml"
    config.write_text(
        config.read_text()
        + "dashboard:\n  users:\n    bob: {approver: [prod]}\n"
        + "  proxy: {header: X-Forwarded-User, from: [127.0.0.1], secret_env: PROXY_SECRET}\n"
    )
    dashboard, front = free_ports(2)
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "releaser.cli",
            "-C",
            str(config.parent),
            "serve",
            "--listen",
            f"{SERVE_AT}:{dashboard}",
        ],
        env={**os.environ, "RELEASER_DASHBOARD_SECRET": SECRET, "PROXY_SECRET": PROXY_SECRET},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sign_on = SignOn()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(
        NGINX.format(
            user="user root;\n" if os.geteuid() == 0 else "",
            prefix=prefix,
            port=front,
            auth=sign_on.port,
            serve=SERVE_AT,
            dashboard=dashboard,
            proxy_secret=PROXY_SECRET,
        )
    )
    binary = nginx_binary()
    assert binary, "nginx is not installed: the test command installs Debian's nginx"
    subprocess.run([binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], check=True, capture_output=True)
    try:
        for port, host in ((dashboard, SERVE_AT), (front, "127.0.0.1")):
            listening(host, port, serve)
        yield front, dashboard
    finally:
        with contextlib.suppress(OSError, ValueError):
            pid = int((prefix / "nginx.pid").read_text())
            os.kill(pid, signal.SIGTERM)
            while Path(f"/proc/{pid}").exists():
                time.sleep(0.02)
        serve.terminate()
        serve.wait(10)
        sign_on.close()


def listening(host: str, port: int, serve: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=0.5).close()
            return
        assert serve.poll() is None, serve.stderr.read().decode() if serve.stderr else ""
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port}")


def get(host: str, port: int, headers: dict[str, str], source: str = "127.0.0.1") -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/", headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


def test_the_proxy_signs_in_and_a_header_from_elsewhere_is_refused(proxied) -> None:
    front, dashboard = proxied
    status, page = get("127.0.0.1", front, {"Cookie": "sso=bob"})
    assert status == 200 and "<b>bob</b>" in page
    status, page = get("127.0.0.1", front, {"Cookie": "sso=bob", "X-Forwarded-User": "mallory"})
    assert status == 200 and "<b>bob</b>" in page and "mallory" not in page  # the proxy sets the header
    assert get("127.0.0.1", front, {})[0] == 401  # not signed in at the proxy
    status, page = get(SERVE_AT, dashboard, {"X-Forwarded-User": "bob"}, source="127.0.0.5")
    assert status == 403 and "not the proxy" in page and "127.0.0.5" in page
    status, page = get(SERVE_AT, dashboard, {"X-Forwarded-User": "bob"})  # another process on the proxy's machine
    assert status == 403 and "secret" in page
    status, page = get("127.0.0.1", front, {"Cookie": "sso=mallory"})
    assert status == 403 and "not a dashboard user" in page


@pytest.mark.chromium
def test_in_a_browser_the_proxy_signs_in_and_a_header_sent_around_it_is_refused(proxied) -> None:
    from playwright import sync_api

    from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS

    front, dashboard = proxied
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            through = browser.new_context()
            through.add_cookies([{"name": "sso", "value": "bob", "url": f"http://127.0.0.1:{front}/"}])
            page = through.new_page()
            page.goto(f"http://127.0.0.1:{front}/")
            assert page.inner_text("header .me b") == "bob"
            around = browser.new_context(extra_http_headers={"X-Forwarded-User": "bob"})
            page = around.new_page()
            answer = page.goto(f"http://{SERVE_AT}:{dashboard}/")
            assert answer is not None and answer.status == 403
            assert "secret" in page.inner_text("main") and "bob" not in page.inner_text("header")
        finally:
            browser.close()
