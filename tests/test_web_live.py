"""The dashboard in a real browser (Debian's chromium through Playwright) against `releaser
serve` on the demo sandbox: a promotion watched live (the gray stage's evidence appears and
grows without a reload), an approval from the link a chat message and a mail carry by the right
user, the refusals a browser meets (the promoter, a viewer, an altered link, a frozen environment
on a second server of the same state, a form without its token, a replayed one), and the main
pages in English and Chinese checked for layout."""

from __future__ import annotations

import html
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from playwright import sync_api

from releaser.config import load_config
from releaser.decisions import decide
from releaser.demo import sandbox
from releaser.demo.ports import free_ports
from releaser.demo.traffic import Traffic
from releaser.errors import AwaitingApproval
from releaser.links import approval_link
from releaser.model import ApprovalState
from releaser.notify import open_journal
from releaser.passwords import hash_password
from releaser.pipeline import Pipeline
from releaser.processes import acting_as
from releaser.releases import create_release
from releaser.store import open_store
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.loopback import Receiver
from tests.harness.smtp import SmtpServer

# one sandbox for the module: its tests run on one worker (scripts/test uses --dist loadgroup)
pytestmark = [pytest.mark.chromium, pytest.mark.smtp, pytest.mark.real, pytest.mark.xdist_group("dashboard-sandbox")]

SECRET = "a dashboard secret of at least thirty-two characters"
PASSWORD = "the sandbox password"


class Sandbox:
    """The demo's 13 hosts with a dashboard section, an approval on `full` (not by its promoter),
    a chat robot (Slack's format) and an SMTP server told of approval requests, and `releaser
    serve` running; a second server of the same state, whose configuration freezes prod."""

    def __init__(self, root: Path):
        self.smtp = SmtpServer(root.parent / "smtp", security="none")  # first: the sandbox's ports avoid it
        self.dir = sandbox.prepare_directory(root)
        self.layout = sandbox.build(self.dir, sys.executable)
        self.robot = Receiver()
        self.port, self.frozen_port = free_ports(2)
        self.url, self.frozen_url = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.frozen_port}"
        config = (self.dir / "environments.yaml").read_text()
        config = config.replace(
            "  - stage: full\n    environment: prod\n",
            "  - stage: full\n    environment: prod\n    approval: {not_by_promoter: true}\n",
        )
        config = config.replace(
            "report:\n",
            f"report:\n  mail: {{smtp: '127.0.0.1:{self.smtp.port}', security: none, from: releaser@example.com}}\n",
            1,
        )
        config = config.replace("  prod:\n", "  prod:\n    report_to: [am@example.com]\n", 1)
        digest = hash_password(PASSWORD)
        config += (
            "notifications:\n  webhooks:\n"
            f"    - {{url: '{self.robot.url}/chat', format: slack, events: [approval.requested]}}\n"
            f"dashboard:\n  url: {self.url}\n  users:\n"
            f'    ci: {{password: "{digest}", approver: [prod], email: ci@example.com}}\n'
            f'    bob: {{password: "{digest}", approver: [prod], operator: [prod, test], email: bob@example.com}}\n'
            f'    carol: {{password: "{digest}", email: carol@example.com}}\n'
        )
        (self.dir / "environments.yaml").write_text(config)
        audit = '{name: audit, from: "2000-01-01 00:00", until: "2999-01-01", timezone: UTC, environments: [prod]}'
        (self.dir / "frozen.yaml").write_text(f"{config}freeze:\n  - {audit}\n")
        os.environ["RELEASER_DASHBOARD_SECRET"] = SECRET
        self.config = load_config(self.dir / "environments.yaml")
        self.store = open_store(self.config)
        self.journal, self.notifier = open_journal(self.store, None, self.config)
        for version in ("1.0.0", "1.1.0"):
            create_release(self.store, self.journal, version, self.dir / "artifacts" / f"demo-app-{version}.tar.gz")
        self.servers: list[subprocess.Popen] = []

    def promote(self, version: str, to: str) -> None:
        """As the CI runner would: stage after stage through `to`."""
        with acting_as("ci"):
            Pipeline(self.config, self.store, self.journal).run(version, to)

    def serve(self, port: int, config: str = "environments.yaml") -> None:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "releaser.cli",
                "-C",
                str(self.dir),
                "-c",
                config,
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
            ],
            env={**os.environ, "RELEASER_DASHBOARD_SECRET": SECRET},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.servers.append(server)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if server.poll() is not None:
                    raise AssertionError(server.stderr.read().decode() if server.stderr else "") from None
                time.sleep(0.05)
        raise AssertionError("releaser serve did not listen")

    def close(self) -> None:
        for server in self.servers:
            server.terminate()  # as systemd stops it: a normal end, exit 0
            assert server.wait(10) == 0, server.stderr.read().decode() if server.stderr else ""
        if self.notifier is not None:
            self.notifier.close()
        self.robot.close()
        self.smtp.stop()
        sandbox.stop_apps(self.dir)
        self.store.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    box = Sandbox(tmp_path_factory.mktemp("dashboard") / "sandbox")
    try:
        with Traffic(box.layout):
            box.promote("1.0.0", "gray")
            with pytest.raises(AwaitingApproval):
                box.promote("1.0.0", "full")
            with acting_as("bob"):
                decide(box.store, box.journal, "1.0.0", "full", True, "first install")
            box.promote("1.0.0", "full")
        box.serve(box.port)
        box.serve(box.frozen_port, "frozen.yaml")
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def signed_in(browser, site: Sandbox, user: str, language: str = "en"):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale=language)
    page = context.new_page()
    page.goto(f"{site.url}/signin?lang={language}")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.signin button")
    page.wait_for_url(f"{site.url}/")
    return page


def test_a_promotion_watched_live_then_approved_from_the_chat_link(site: Sandbox, browser) -> None:
    page = signed_in(browser, site, "carol")
    page.goto(f"{site.url}/releases/1.1.0")
    page.evaluate("window.sameDocument = true")
    failures: list[BaseException] = []

    def promote() -> None:
        try:
            with Traffic(site.layout):
                site.promote("1.1.0", "gray")
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=promote)
    worker.start()
    try:
        figure = page.wait_for_selector("figure.evidence", timeout=90_000)
        first = int(figure.get_attribute("data-looks") or 0)
        page.wait_for_function(
            f"() => Number(document.querySelector('figure.evidence')?.dataset.looks || 0) > {first}", timeout=90_000
        )
        assert page.evaluate("window.sameDocument") is True  # grown in place: no reload
        assert page.locator("figure.evidence svg polyline.cohort").count() >= 1
    finally:
        worker.join(180)
    assert not failures, failures
    page.wait_for_function("() => document.querySelector('main').innerText.includes('passed')", timeout=10_000)

    # full needs an approval: the promoter's runner asks (exit 5 on the CLI); the chat gets the link
    with pytest.raises(AwaitingApproval):
        site.promote("1.1.0", "full")
    site.notifier.close()  # delivers what is queued
    (message,) = [m for m in site.robot.received["/chat"] if "1.1.0" in m["text"]]
    shown = html.unescape(message["text"])  # as Slack shows it: its text escapes <, > and &
    link = shown.rsplit("decide at ", 1)[1].split()[0]
    assert link.startswith(f"{site.url}/approvals/")
    (mailed,) = [m for m in site.smtp.messages if "1.1.0" in m["message"]["Subject"]]
    assert mailed["to"] == ["bob@example.com"]  # the approver; not ci (who asked), not carol (a viewer)
    assert mailed["message"].get_content().split("(you sign in first): ")[1].split()[0] == link  # the same link

    promoter = signed_in(browser, site, "ci")
    promoter.goto(link)
    assert promoter.locator("form[action='/act/approve']").count() == 1, promoter.inner_text("main")
    promoter.fill("form[action='/act/approve'] textarea", "mine")
    promoter.check("form[action='/act/approve'] input[name=confirmed]")
    promoter.click("form[action='/act/approve'] button")
    assert "not_by_promoter" in promoter.inner_text("main")

    viewer = signed_in(browser, site, "carol")
    viewer.goto(link)
    assert "not an approver of prod" in viewer.inner_text("main")
    viewer.goto(link.replace("sig=", "sig=0"))
    assert "altered" in viewer.inner_text("main")
    request_id = int(link.split("/approvals/")[1].split("?")[0])
    viewer.goto(approval_link(site.url, SECRET, request_id, "1.1.0", "full", 3600, now=time.time() - 7200))
    assert "expired" in viewer.inner_text("main")

    # the second server's configuration freezes prod: the approval is refused there, as the CLI refuses it
    frozen = browser.new_context().new_page()
    frozen.goto(link.replace(site.url, site.frozen_url))
    frozen.fill("input[name=user]", "bob")
    frozen.fill("input[name=password]", PASSWORD)
    frozen.click("form.signin button")
    frozen.fill("form[action='/act/approve'] textarea", "during the audit")
    frozen.check("form[action='/act/approve'] input[name=confirmed]")
    frozen.click("form[action='/act/approve'] button")
    assert "frozen" in frozen.inner_text("main") and "audit" in frozen.inner_text("main")
    # a form that lost its token (another tab's script, a stripped proxy) is refused before anything is done
    frozen.goto(link.replace(site.url, site.frozen_url))
    frozen.evaluate("document.querySelector(\"form[action='/act/approve'] input[name=token]\").remove()")
    frozen.fill("form[action='/act/approve'] textarea", "no token")
    frozen.check("form[action='/act/approve'] input[name=confirmed]")
    frozen.click("form[action='/act/approve'] button")
    assert "token is missing" in frozen.inner_text("main")
    assert all(r.state is ApprovalState.AWAITING for r in site.store.approvals("1.1.0") if r.stage == "full")

    approver = browser.new_context().new_page()
    approver.goto(link)  # not signed in: the sign-in page first, then the approval (the mail's link)
    approver.fill("input[name=user]", "bob")
    approver.fill("input[name=password]", PASSWORD)
    approver.click("form.signin button")
    approver.wait_for_url(link)
    token = approver.get_attribute("form[action='/act/approve'] input[name=token]", "value")
    approver.fill("form[action='/act/approve'] textarea", "canary clean, CAB-12")
    approver.check("form[action='/act/approve'] input[name=confirmed]")
    approver.click("form[action='/act/approve'] button")
    approver.wait_for_url(f"{site.url}/releases/1.1.0")
    assert "approved by bob" in approver.inner_text("p.done")
    replay = approver.request.post(
        f"{site.url}/act/approve",
        form={"token": token, "release": "1.1.0", "stage": "full", "env": "prod", "reason": "x", "confirmed": "yes"},
    )
    assert replay.status == 403 and "sent already" in replay.text()
    (request,) = [r for r in site.store.approvals("1.1.0") if r.stage == "full"]
    assert request.state is ApprovalState.APPROVED and request.decided_by == "bob"
    assert request.reason == "canary clean, CAB-12"

    # a rollback's confirmation shows the plan `rollback --dry-run` makes, from asking the hosts
    approver.goto(f"{site.url}/act/rollback?env=test")
    rows = approver.eval_on_selector_all(
        "table.hosts tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    assert rows == [["test-1", "1.1.0", "1.0.0"], ["test-2", "1.1.0", "1.0.0"]], rows


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_main_pages_lay_out_in_both_languages(site: Sandbox, browser, language: str, tmp_path: Path) -> None:
    page = signed_in(browser, site, "carol", language)
    for path in ("/", "/releases", "/releases/1.0.0", "/environments/prod", "/journal", "/reports"):
        page.goto(f"{site.url}{path}")
        shot = tmp_path / f"{path.strip('/').replace('/', '-') or 'overview'}-{language}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is wider than the window by {overflow}px"
        heading = page.inner_text("h1")
        assert heading.strip(), path
        if language == "zh-CN":
            assert page.inner_text("nav").count("总览") == 1
        header = page.locator("header").bounding_box()
        main = page.locator("main").bounding_box()
        assert header and main and main["y"] >= header["y"] + header["height"] - 1  # nothing drawn under the header
