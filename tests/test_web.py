"""The dashboard in-process (starlette's TestClient on a state built with the store's own
calls): who may see and do what, sign-in and its throttling, forms' one-time tokens, approval
links, escaping, both languages. The browser's view of a live promotion is tests/test_web_live.py."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from releaser.cli import cli
from releaser.config import load_config
from releaser.events import Event
from releaser.journal import Journal
from releaser.links import approval_link
from releaser.model import ApprovalState, Release, RunStatus, utcnow
from releaser.passwords import check_password, hash_password
from releaser.store import open_store
from releaser.web.app import Dashboard, build
from releaser.web.auth import FAILURES_PER_USER
from releaser.web.words import LANGUAGES, WORDS
from tests.harness.configs import write_project

SECRET = "s" * 40
PROXY_SECRET = "what only the proxy knows"
PASSWORD = "correct horse battery"
HASH = hash_password(PASSWORD)  # once: a slow hash is slow on purpose
_parts = HASH.split("$")
SALT_CUT = "$".join([*_parts[:4], _parts[4][1:], _parts[5]])


def configure(root: Path, extra: str = "", top: str = "", full_approval: str = "{not_by_promoter: true}") -> Path:
    write_project(root)
    config = (root / "environments.yaml").read_text()
    config = config.replace(
        "  - stage: full\n    environment: prod\n",
        f"  - stage: full\n    environment: prod\n    approval: {full_approval}\n",
    )
    config += (
        "dashboard:\n  url: https://releaser.example.com\n  users:\n"
        f'    alice: {{password: "{HASH}", approver: [prod], operator: [prod]}}\n'
        f'    bob: {{password: "{HASH}", approver: ["*"]}}\n'
        f'    carol: {{password: "{HASH}"}}\n'
        "  proxy: {header: X-Forwarded-User, from: [10.9.8.7], secret_env: PROXY_SECRET}\n" + extra + top
    )
    (root / "environments.yaml").write_text(config)
    return root / "environments.yaml"


class Site:
    """A dashboard over a fresh state, and a browser-like client per user."""

    def __init__(self, root: Path, extra: str = "", top: str = "", full_approval: str = "{not_by_promoter: true}"):
        self.path = configure(root, extra, top, full_approval)
        self.config = load_config(self.path)
        self.store = open_store(self.config, create=True)
        self.journal = Journal(self.store, None)
        self.app = build(Dashboard(self.config, self.store, self.journal, SECRET, proxy_secret=PROXY_SECRET))

    def client(self, user: str | None = None, address: str = "192.0.2.1") -> TestClient:
        client = TestClient(self.app, client=(address, 40000), follow_redirects=False)
        client.__enter__()
        if user:
            answer = sign_in(client, user)
            assert answer.status_code == 303, answer.text
        return client

    def release(self, version: str, asked_by: str = "alice") -> int:
        """A release that passed gray and whose full stage awaits approval; the request's id."""
        self.store.add_release(
            Release(version=version, artifact="/a.tgz", sha256="ab" * 32, size=1, created_at=utcnow(), created_by="ci")
        )
        run = self.store.start_stage_run(version, "gray", "prod", asked_by)
        self.store.set_stage_run_status(run.id, RunStatus.PASSED)
        approval = self.config.stage("full").approval
        assert approval is not None
        request, _new = self.store.request_approval(
            version, "full", asked_by, list(approval.approvers), approval.not_by_promoter
        )
        self.journal.record(
            Event.APPROVAL_REQUESTED,
            f"full: {asked_by} asks",
            release=version,
            stage="full",
            data={"request": request.id},
        )
        return request.id


def sign_in(client: TestClient, user: str, password: str = PASSWORD, target: str = "/"):
    """As a browser does: the sign-in page (its form's token and cookie), then the form."""
    page = client.get("/signin")
    return client.post(
        "/signin", data={"user": user, "password": password, "next": target, "token": token_of(page.text)}
    )


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path / "proj")


def token_of(page: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def decide(client: TestClient, action: str, version: str, reason: str = "looks right", **fields: str):
    page = client.get(f"/act/{action}", params={"release": version, "stage": "full"})
    assert page.status_code == 200, page.text
    form = {"token": token_of(page.text), "release": version, "stage": "full", "env": "prod", "reason": reason}
    return client.post(f"/act/{action}", data={**form, "confirmed": "yes", **fields}, follow_redirects=True)


# -- who is asking --


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/releases",
        "/releases/1.0",
        "/environments/prod",
        "/journal",
        "/reports",
        "/reports/1.0",
        "/reports/service/prod/2026-11",
        "/act/unlock?env=prod",
    ],
)
def test_every_page_needs_a_signed_in_user(site: Site, path: str) -> None:
    answer = site.client().get(path)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin?next=")


def test_live_events_and_actions_need_a_signed_in_user(site: Site) -> None:
    client = site.client()
    assert client.get("/live").status_code == 401
    assert client.post("/act/approve", data={"release": "1.0"}).status_code == 303
    assert client.post("/signout", data={}).status_code == 303


def test_sign_in_sets_a_safe_cookie_and_journals_who(site: Site) -> None:
    client = site.client()
    answer = sign_in(client, "alice", target="//evil.example/x")
    (cookie,) = [c.lower() for c in answer.headers.get_list("set-cookie") if c.startswith("releaser_session=")]
    assert answer.headers["location"] == "/"  # never off this dashboard
    assert "httponly" in cookie and "samesite=lax" in cookie
    signed = site.store.find_events(kind="dashboard.signed_in")
    assert [e.data["user"] for e in signed] == ["alice"]
    assert PASSWORD not in str([(e.message, e.data) for e in site.store.find_events()])
    assert client.get("/").status_code == 200


def test_a_wrong_password_is_refused_and_repeated_failures_are_throttled(site: Site) -> None:
    client = site.client()
    for _ in range(FAILURES_PER_USER):
        assert sign_in(client, "alice", "guess").status_code == 401
    answer = sign_in(client, "alice")
    assert answer.status_code == 429 and "too many failed sign-ins as alice from this address" in answer.text
    assert len(site.store.find_events(kind="dashboard.signin_throttled")) == 1
    assert sign_in(site.client(address="192.0.2.99"), "bob").status_code == 303


def test_a_sign_in_form_not_given_by_the_page_is_refused(site: Site) -> None:
    """Login CSRF: another site's form must not sign a visitor in as the form's author."""
    client = site.client()
    forged = client.post("/signin", data={"user": "alice", "password": PASSWORD, "next": "/"})
    assert forged.status_code == 403 and "reload the sign-in page" in forged.text
    token = token_of(site.client().get("/signin").text)  # a genuine token, for another browser's cookie
    stolen = client.post("/signin", data={"user": "alice", "password": PASSWORD, "token": token})
    assert stolen.status_code == 403 and "releaser_session" not in client.cookies
    assert not site.store.find_events(kind="dashboard.signed_in")
    assert sign_in(client, "alice").status_code == 303  # the page's own form, in the same browser


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(site: Site) -> None:
    client = site.client("alice")
    stolen = client.cookies.get("releaser_session")
    page = client.get("/")
    assert client.post("/signout", data={"token": token_of(page.text)}).status_code == 303
    replay = site.client()
    replay.cookies.set("releaser_session", stolen)
    assert replay.get("/").status_code == 303


def test_an_expired_session_signs_out(tmp_path: Path) -> None:
    site = Site(tmp_path / "proj", extra="  session: 1ms\n")
    client = site.client("alice")
    assert client.get("/").status_code == 303


def test_the_proxy_header_signs_in_from_the_proxy_with_its_secret_only(site: Site) -> None:
    proxied = site.client(address="10.9.8.7")
    through = {"X-Forwarded-User": "bob", "X-Releaser-Proxy": PROXY_SECRET}
    assert proxied.get("/", headers=through).status_code == 200
    assert proxied.get("/releases", headers=through).status_code == 200
    signed = [e.data for e in site.store.find_events(kind="dashboard.signed_in")]
    assert signed == [{"user": "bob", "via": "proxy", "address": "10.9.8.7"}]  # once, not per request
    elsewhere = site.client(address="192.0.2.1").get("/", headers=through)
    assert elsewhere.status_code == 403 and "not the proxy" in elsewhere.text
    local = proxied.get("/", headers={"X-Forwarded-User": "bob", "X-Releaser-Proxy": "a guess"})
    assert local.status_code == 403 and "without the proxy" in local.text
    assert proxied.get("/", headers={"X-Forwarded-User": "bob"}).status_code == 403
    stranger = proxied.get("/", headers={"X-Forwarded-User": "mallory", "X-Releaser-Proxy": PROXY_SECRET})
    assert stranger.status_code == 403 and "not a dashboard user" in stranger.text


# -- approvals from the page --


def test_an_approver_approves_as_themselves(site: Site) -> None:
    site.release("1.0", asked_by="alice")
    answer = decide(site.client("bob"), "approve", "1.0", reason="CAB-7 agreed")
    assert answer.status_code == 200 and "approved by bob" in answer.text
    (request,) = site.store.approvals("1.0")
    assert request.state is ApprovalState.APPROVED and request.decided_by == "bob" and request.reason == "CAB-7 agreed"
    (granted,) = site.store.find_events(kind="approval.granted")
    assert granted.data["by"] == "bob"


def test_the_approval_confirmation_shows_who_asked_and_the_last_verdicts(site: Site) -> None:
    site.release("1.0", asked_by="alice")
    result = {"check": "canary", "verdict": "pass", "summary": "errors: 0/400 vs 2/3600 => no regression", "hosts": {}}
    site.journal.record(
        Event.CHECKS_PASS, "gray: pass", release="1.0", stage="gray", environment="prod", data={"results": [result]}
    )
    page = site.client("bob").get("/act/approve", params={"release": "1.0", "stage": "full"}).text
    assert re.search(r'class="asked">Asked by: alice, ', page), page
    assert '<span class="pill passed">gray</span>' in page
    assert re.search(r"<b>canary</b> <span class=\"pill pass\">pass</span> errors: 0/400 vs 2/3600 =&gt; no regr", page)


def test_a_release_awaiting_approval_reads_so_until_a_newer_one_goes_further(site: Site) -> None:
    from releaser.model import ReleaseStatus
    from releaser.status import status_document

    def status_of(version: str) -> str:
        return next(
            r["status"] for r in status_document(site.config, site.store)["releases"] if r["version"] == version
        )

    site.release("1.0")
    site.store.set_release_status("1.0", ReleaseStatus.PROMOTING)
    assert status_of("1.0") == "awaiting_approval"
    assert (
        '<span class="pill awaiting_approval">awaiting approval</span>'
        in site.client("carol").get("/releases/1.0").text
    )
    site.store.add_release(Release(version="1.1", artifact="/a", sha256="cd" * 32, size=1, created_at=utcnow()))
    newer = site.store.start_stage_run("1.1", "gray", "prod", "ci")
    site.store.set_stage_run_status(newer.id, RunStatus.PASSED)
    assert status_of("1.0") == "abandoned"  # approving it now would take prod back: not offered as waiting


def test_the_promoter_may_not_approve_under_not_by_promoter(site: Site) -> None:
    site.release("1.0", asked_by="alice")
    answer = decide(site.client("alice"), "approve", "1.0")
    assert answer.status_code == 409 and "not_by_promoter" in answer.text
    assert site.store.approvals("1.0")[0].state is ApprovalState.AWAITING


def test_a_viewer_may_not_decide(site: Site) -> None:
    site.release("1.0")
    carol = site.client("carol")
    page = carol.get("/act/approve", params={"release": "1.0", "stage": "full"})
    assert page.status_code == 403 and "not an approver of prod" in page.text
    token = token_of(carol.get("/").text)  # a genuine token of hers: the role still refuses
    answer = carol.post(
        "/act/approve",
        data={"token": token, "release": "1.0", "stage": "full", "reason": "x", "confirmed": "yes"},
    )
    assert answer.status_code == 403
    assert site.store.approvals("1.0")[0].state is ApprovalState.AWAITING


def test_a_frozen_environment_refuses_an_approval_but_not_a_rejection(tmp_path: Path) -> None:
    freeze = 'freeze:\n  - {name: year-end, from: "2000-01-01 00:00", until: "2999-01-01 00:00", timezone: UTC}\n'
    site = Site(tmp_path / "proj", top=freeze)
    site.release("1.0")
    answer = decide(site.client("bob"), "approve", "1.0")
    assert answer.status_code == 409 and "prod is frozen" in answer.text and "year-end" in answer.text
    assert decide(site.client("bob"), "reject", "1.0").status_code == 200
    assert site.store.approvals("1.0")[0].state is ApprovalState.REJECTED


def test_a_form_needs_its_token_once(site: Site) -> None:
    site.release("1.0")
    bob = site.client("bob")
    page = bob.get("/act/reject", params={"release": "1.0", "stage": "full"})
    form = {"release": "1.0", "stage": "full", "reason": "no", "confirmed": "yes"}
    assert bob.post("/act/reject", data=form).status_code == 403  # missing
    alices = token_of(site.client("alice").get("/").text)
    assert bob.post("/act/reject", data={**form, "token": alices}).status_code == 403  # another session's
    token = token_of(page.text)
    unconfirmed = bob.post("/act/reject", data={**form, "token": token, "confirmed": ""})
    assert unconfirmed.status_code == 400 and site.store.approvals("1.0")[0].state is ApprovalState.AWAITING
    token = token_of(bob.get("/act/reject", params={"release": "1.0", "stage": "full"}).text)
    done = bob.post("/act/reject", data={**form, "token": token})
    assert (
        done.status_code == 303 and done.headers["location"] == "/releases/1.0"
    )  # a page to get: a reload sends nothing
    assert "rejected by bob" in bob.get("/releases/1.0").text
    assert "rejected by bob" not in bob.get("/releases/1.0").text  # said once
    replay = bob.post("/act/reject", data={**form, "token": token})
    assert replay.status_code == 403 and "sent already" in replay.text


def test_cross_site_form_posts_carry_no_cookie_and_no_token(site: Site) -> None:
    site.release("1.0")
    bob = site.client("bob")
    answer = bob.post(
        "/act/approve", data={"release": "1.0", "stage": "full", "reason": "x", "confirmed": "yes", "token": "a.1.b"}
    )
    assert answer.status_code == 403 and site.store.approvals("1.0")[0].state is ApprovalState.AWAITING


# -- approval links --


def test_an_approval_link_opens_its_request_after_sign_in(site: Site) -> None:
    request = site.release("1.0")
    link = approval_link("", SECRET, request, "1.0", "full", 3600)
    stranger = site.client()
    answer = stranger.get(link)
    assert answer.status_code == 303 and "next=%2Fapprovals%2F" in answer.headers["location"]
    bob = site.client("bob")
    page = bob.get(link)
    assert page.status_code == 200 and 'action="/act/approve"' in page.text and 'action="/act/reject"' in page.text


def test_a_tampered_or_expired_link_is_refused(site: Site) -> None:
    request = site.release("1.0")
    site.release("2.0")
    bob = site.client("bob")
    good = approval_link("", SECRET, request, "1.0", "full", 3600)
    assert bob.get(good.replace("release=1.0", "release=2.0")).status_code == 403
    assert bob.get(good.replace("stage=full", "stage=gray")).status_code == 403
    forged = approval_link("", "another secret of forty characters......", request, "1.0", "full", 3600)
    assert bob.get(forged).status_code == 403
    expired = approval_link("", SECRET, request, "1.0", "full", -1)
    answer = bob.get(expired)
    assert answer.status_code == 410 and "expired" in answer.text


def test_the_approval_request_carries_a_signed_link_for_chat(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from releaser.decisions import approved
    from releaser.errors import AwaitingApproval
    from releaser.interrupts import Interrupts
    from releaser.links import link_for, link_problem

    monkeypatch.setenv("RELEASER_DASHBOARD_SECRET", SECRET)
    site.store.add_release(Release(version="3.0", artifact="/a", sha256="cd" * 32, size=1, created_at=utcnow()))
    spec = site.config.stage("full")
    with pytest.raises(AwaitingApproval):
        approved(
            site.store,
            site.journal,
            spec,
            "3.0",
            False,
            Interrupts(),
            lambda r: link_for(site.config.dashboard, r, "3.0", "full"),
        )
    (event,) = [e for e in site.store.find_events(kind="approval.requested") if e.release == "3.0"]
    link = event.data["link"]
    assert link.startswith("https://releaser.example.com/approvals/") and link in event.message
    query = dict(pair.split("=") for pair in link.split("?", 1)[1].split("&"))
    assert link_problem(SECRET, event.data["request"], "3.0", "full", query["until"], query["sig"]) is None


def test_a_runner_without_the_secret_says_its_link_opens_only_the_release(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    from releaser.pipeline import Pipeline

    monkeypatch.delenv("RELEASER_DASHBOARD_SECRET", raising=False)
    said: list[str] = []
    pipeline = Pipeline(site.config, site.store, Journal(site.store, lambda event: said.append(event.message)))
    assert pipeline._approval_link(7, "3.0", "full") == "https://releaser.example.com/releases/3.0"
    assert said == [
        "$RELEASER_DASHBOARD_SECRET is not set here: the approval link opens 3.0's page, not its request (set it as "
        "on the dashboard's servers)"
    ]
    monkeypatch.setenv("RELEASER_DASHBOARD_SECRET", SECRET)
    said.clear()
    assert "/approvals/7?" in (pipeline._approval_link(7, "3.0", "full") or "") and said == []


# -- pages --


def test_pages_escape_what_the_state_holds(site: Site) -> None:
    site.journal.record(Event.LOCK_CLEARED, "<script>alert(1)</script>", environment="prod")
    page = site.client("carol").get("/journal")
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_the_journal_filters_by_kind_release_and_words(site: Site) -> None:
    site.release("1.0")
    site.release("2.0")
    carol = site.client("carol")
    page = carol.get("/journal", params={"release": "2.0", "kind": "approval"}).text
    assert "/releases/2.0" in page and "/releases/1.0" not in page
    assert "signed in" not in carol.get("/journal", params={"q": "asks"}).text


def test_the_canary_evidence_is_drawn_with_what_it_still_needs(site: Site) -> None:
    site.store.add_release(Release(version="1.1", artifact="/a", sha256="ef" * 32, size=1, created_at=utcnow()))
    site.store.start_stage_run("1.1", "gray", "prod", "ci")
    for n, (cohort, baseline) in enumerate([(100, 900), (250, 2250)]):
        evidence = {
            "metric": "errors",
            "cohort_requests": cohort,
            "cohort_events": n + 1,
            "baseline_requests": baseline,
            "baseline_events": 3 * (n + 1),
            "ratio": 1.5,
            "margin": 0.0,
            "decision": "inconclusive",
            "more_requests": 1200 - 400 * n,
        }
        result = {
            "check": "canary",
            "verdict": "inconclusive",
            "summary": "not yet",
            "hosts": {},
            "evidence": [evidence],
        }
        site.journal.record(
            Event.CHECKS_INCONCLUSIVE,
            "gray: checks inconclusive",
            release="1.1",
            stage="gray",
            environment="prod",
            data={"results": [result]},
        )
    page = site.client("carol").get("/releases/1.1").text
    assert 'data-looks="2"' in page and page.count("<polyline") == 3
    assert "about 800 more requests to decide" in page and "2/250" in page


def test_both_languages_say_every_word(site: Site) -> None:
    assert all(set(entry) == set(LANGUAGES) for entry in WORDS.values())
    carol = site.client("carol")
    chinese = carol.get("/", params={"lang": "zh-CN"})
    assert "总览" in chinese.text and 'lang="zh-CN"' in chinese.text
    assert "总览" in carol.get("/releases").text  # remembered


# -- configuration and the command --


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ('alice: {password: "hunter2"}', "never the password itself"),
        pytest.param(f'alice: {{password: "{HASH[:-6]}"}}', "this hash is cut or altered", id="digest-cut"),
        pytest.param(f'alice: {{password: "{SALT_CUT}"}}', "this hash is cut or altered", id="salt-cut"),
        (
            'alice: {password: "scrypt$16$8$1$AAAAAAAAAAAAAAAAAAAAAA==$' + "A" * 44 + '"}',
            "outside what releaser accepts",
        ),
        ("alice: {password: null, approver: [prd]}", "did you mean `prod`"),
        ("alice: {}", "no user can sign in"),
        ('"al ice": {}', "a user name"),
    ],
)
def test_bad_dashboard_configuration_is_refused_with_its_line(tmp_path: Path, users: str, message: str) -> None:
    write_project(tmp_path)
    path = tmp_path / "environments.yaml"
    path.write_text(path.read_text() + f"dashboard:\n  users:\n    {users}\n")
    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "validate"])
    assert result.exit_code == 2 and "environments.yaml:" in result.output and message in result.output


def test_serve_refuses_without_its_section_or_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path / "bare")
    result = CliRunner().invoke(cli, ["-C", str(tmp_path / "bare"), "serve"])
    assert result.exit_code == 2 and "no `dashboard:` section" in result.output
    configure(tmp_path / "proj")
    monkeypatch.setenv("RELEASER_DASHBOARD_SECRET", "short")
    result = CliRunner().invoke(cli, ["-C", str(tmp_path / "proj"), "serve"])
    assert result.exit_code == 2 and "holds 5 characters" in result.output and "at least 32" in result.output
    assert "short" not in result.output
    monkeypatch.setenv("RELEASER_DASHBOARD_SECRET", SECRET)
    result = CliRunner().invoke(cli, ["-C", str(tmp_path / "proj"), "serve"])
    assert result.exit_code == 2 and "$PROXY_SECRET must hold the secret the proxy sends" in result.output
    monkeypatch.setenv("PROXY_SECRET", PROXY_SECRET)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["-C", str(tmp_path / "proj"), "serve", "--listen", f"127.0.0.1:{port}"])
    assert (
        result.exit_code == 2 and "Address already in use" in result.output and "the dashboard of" not in result.output
    )


def test_hash_password_prints_a_hash_that_checks() -> None:
    result = CliRunner().invoke(cli, ["serve", "--hash-password"], input="a long passphrase\n")  # a pipe: one line
    assert result.exit_code == 0, result.output
    stored = result.output.strip().splitlines()[-1]
    assert stored.startswith("scrypt$") and check_password("a long passphrase", stored)
    assert not check_password("a long passphrasE", stored)


def test_the_releases_page_shows_the_newest_hundred_then_older(site: Site) -> None:
    for n in range(105):  # registered a second apart: the page orders by registration time
        registered = f"2026-11-01T00:{n // 60:02d}:{n % 60:02d}.000+00:00"
        site.store.add_release(
            Release(version=f"0.{n}", artifact="/a", sha256="ab" * 32, size=1, created_at=registered)
        )
    carol = site.client("carol")
    first = carol.get("/releases").text
    assert "/releases/0.104" in first and '/releases/0.5"' in first and '/releases/0.4"' not in first
    assert 'href="/releases?page=2"' in first
    second = carol.get("/releases", params={"page": "2"}).text
    assert '/releases/0.4"' in second and "/releases/0.104" not in second and "page=3" not in second


def test_pages_offer_only_the_actions_the_user_may_take(site: Site) -> None:
    site.release("1.0", asked_by="alice")
    offered = site.client("bob").get("/releases/1.0").text
    assert "/act/approve?release=1.0" in offered and "/act/reject?release=1.0" in offered
    promoter = site.client("alice").get("/releases/1.0").text  # not_by_promoter: she may only reject
    assert "/act/approve?release=1.0" not in promoter and "/act/reject?release=1.0" in promoter
    viewer = site.client("carol")
    assert "/act/" not in viewer.get("/releases/1.0").text and "/act/" not in viewer.get("/environments/prod").text
    assert "/act/rollback?env=prod" in site.client("alice").get("/environments/prod").text


def test_states_are_said_in_the_page_language(site: Site) -> None:
    site.release("1.0")
    chinese = site.client("carol").get("/releases/1.0", params={"lang": "zh-CN"}).text
    assert "已通过" in chinese and "待审批" in chinese  # gray passed; full awaits approval
    assert ">passed<" not in chinese
    missing = site.client("carol").get("/releases/9.9")
    assert missing.status_code == 404 and "<h1>Not found</h1>" in missing.text


def test_the_reports_page_lists_every_report_and_opens_the_written_ones(site: Site) -> None:
    from releaser.model import Report, ReportState, ServiceReport

    site.release("1.0")
    site.release("2.0")
    site.store.schedule_report(
        Report(
            release="1.0",
            environment="prod",
            live_at=utcnow(),
            due_at="2026-11-03T10:00:00+00:00",
            state=ReportState.SCHEDULED,
            message_id="<1@x>",
        )
    )
    site.store.schedule_service_report(
        ServiceReport(
            environment="prod",
            month="2026-10",
            due_at="2026-11-01T00:00:00+00:00",
            state=ReportState.SCHEDULED,
            message_id="<2@x>",
        )
    )
    site.store.update_service_report("prod", "2026-10", state=ReportState.SENT, sent_at=utcnow(), delivered_to=3)
    written = site.config.reports_dir / "2.0" / "report.html"  # `releaser report 2.0`: a preview, written here
    written.parent.mkdir(parents=True)
    written.write_text("<html><body>effect of 2.0</body></html>")
    month = site.config.reports_dir / "service" / "prod" / "2026-11" / "report.html"
    month.parent.mkdir(parents=True)
    month.write_text("<html><body>November <script>alert(1)</script></body></html>")
    carol = site.client("carol")
    page = carol.get("/reports").text
    assert page.index("/releases/2.0") < page.index("/releases/1.0")  # newest first
    assert '<a href="/reports/2.0">' in page and '<a href="/reports/1.0">' not in page  # 1.0: due, not written
    assert "scheduled" in page and "2026-10" in page and "(3)" in page  # October: sent to 3 recipients
    assert "not written yet" in page  # 1.0: scheduled, not sent: no copy anywhere yet
    assert '<a href="/reports/service/prod/2026-11">' in page and "2026-10</td>" in page
    opened = carol.get("/reports/service/prod/2026-11")
    assert opened.status_code == 200 and "November" in opened.text
    assert "sandbox" in opened.headers["content-security-policy"]  # its script never runs
    assert '<a href="/reports/2.0">' in carol.get("/releases/2.0").text
    assert carol.get("/reports/service/prod/2026-10").status_code == 404  # sent from elsewhere: no copy here
    assert carol.get("/reports/service/prod/2026-13").status_code == 404
    assert carol.get("/reports/service/nowhere/2026-11").status_code == 404
    chinese = carol.get("/reports", params={"lang": "zh-CN"}).text
    assert "月度服务报告" in chinese and "已发送" in chinese and "待发送" in chinese


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def one_state(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    """A site on each backend in turn (PostgreSQL: a real server, a database of this test's own)."""
    if request.param == "sqlite":
        return Site(tmp_path / "proj")
    monkeypatch.setenv("RELEASER_DATABASE_URL", request.getfixturevalue("postgres").database())
    return Site(tmp_path / "proj", top="state: {backend: postgresql}\n")


def test_two_servers_on_one_state_share_sessions_forms_and_decisions(one_state: Site) -> None:
    site = one_state
    other = build(Dashboard(site.config, site.store, site.journal, SECRET, proxy_secret=PROXY_SECRET))
    site.release("1.0", asked_by="alice")
    bob = site.client("bob")
    elsewhere = TestClient(other, client=("192.0.2.1", 40000), follow_redirects=False)
    elsewhere.cookies.set("releaser_session", bob.cookies["releaser_session"])
    page = elsewhere.get("/act/approve", params={"release": "1.0", "stage": "full"})
    assert page.status_code == 200  # signed in on the first server, known to the second
    form = {"token": token_of(page.text), "release": "1.0", "stage": "full", "env": "prod", "reason": "ok"}
    assert bob.post("/act/approve", data={**form, "confirmed": "yes"}).status_code == 303  # sent to the first
    replay = elsewhere.post("/act/approve", data={**form, "confirmed": "yes"})
    assert replay.status_code == 403 and "sent already" in replay.text  # spent for every server
    (request,) = site.store.approvals("1.0")
    assert request.state is ApprovalState.APPROVED and request.decided_by == "bob"
    assert "approved" in elsewhere.get("/releases/1.0").text
    assert bob.post("/signout", data={"token": token_of(bob.get("/").text)}).status_code == 303
    assert elsewhere.get("/").status_code == 303  # signed out everywhere
    for _ in range(FAILURES_PER_USER):
        assert sign_in(site.client(), "carol", "guess").status_code == 401
    refused = sign_in(TestClient(other, client=("192.0.2.1", 40000), follow_redirects=False), "carol")
    assert refused.status_code == 429  # the second server counts the first's failures


def test_the_rollback_confirmation_says_what_the_dry_run_says(site: Site) -> None:
    """The plan comes from `rollback --dry-run`'s own code (hosts asked; drawn in the browser test
    on real hosts): here its refusal, in its words, and no form that pretends otherwise."""
    site.store.set_host_state("prod", "web-1", "2.0", "1.0")
    page = site.client("alice").get("/act/rollback", params={"env": "prod"})
    assert page.status_code == 200
    assert "web-1 has no earlier release on record; name one with --to VERSION" in page.text


def test_refusals_and_what_was_done_are_said_in_chinese(tmp_path: Path) -> None:
    from releaser.web.words import MESSAGES

    freeze = 'freeze:\n  - {name: audit, from: "2000-01-01 00:00", until: "2999-01-01 00:00", timezone: UTC}\n'
    site = Site(tmp_path / "proj", top=freeze)
    request = site.release("1.0", asked_by="alice")

    def chinese(client: TestClient) -> TestClient:
        client.get("/signin", params={"lang": "zh-CN"})  # the language is remembered in a cookie
        return client

    said = []
    stranger = chinese(site.client())
    said.append(sign_in(stranger, "alice", "guess").text)
    said.append(stranger.post("/signin", data={"user": "alice", "password": PASSWORD}).text)
    alice, carol, bob = (chinese(site.client(name)) for name in ("alice", "carol", "bob"))
    said.append(decide(alice, "approve", "1.0").text)  # not_by_promoter
    said.append(carol.get("/act/approve", params={"release": "1.0", "stage": "full"}).text)
    said.append(decide(bob, "approve", "1.0").text)  # frozen
    form = {"release": "1.0", "stage": "full", "env": "prod", "reason": "x", "confirmed": "yes"}
    said.append(bob.post("/act/reject", data=form).text)  # no token
    link = approval_link("", SECRET, request, "1.0", "full", 3600)
    said.append(bob.get(link.replace("sig=", "sig=0")).text)
    said.append(decide(bob, "reject", "1.0", reason="not now").text)  # done: the banner
    text = "\n".join(said)
    for zh in (
        "用户名或密码错误",
        "此登录表单不是本页面给出的",
        "alice发起了1.0的full阶段，不能同时批准（not_by_promoter）",
        "carol不是prod的审批人",
        "prod处于封版期",
        "表单缺少令牌",
        "此审批链接已被改动",
        "1.0的full阶段：已由bob驳回",
    ):
        assert zh in text, zh
    assert all(zh.count("{") == zh.count("}") for _pattern, zh in MESSAGES)


def test_a_changed_configuration_holds_from_the_next_request(site: Site) -> None:
    """A user removed, a role taken away, a freeze added: no restart needed. A file that no longer
    reads leaves the last good configuration in force, and says so."""
    warned: list[str] = []
    dashboard = Dashboard(site.config, site.store, site.journal, SECRET, proxy_secret=PROXY_SECRET, warn=warned.append)
    site.app = build(dashboard)
    site.release("1.0", asked_by="alice")
    bob, carol = site.client("bob"), site.client("carol")
    page = bob.get("/act/approve", params={"release": "1.0", "stage": "full"})
    assert page.status_code == 200
    text = site.path.read_text()
    frozen = 'freeze:\n  - {name: audit, from: "2000-01-01 00:00", until: "2999-01-01 00:00", timezone: UTC}\n'
    site.path.write_text(text.replace(f'    carol: {{password: "{HASH}"}}\n', "") + frozen)
    answer = bob.post(
        "/act/approve",
        data={
            "token": token_of(page.text),
            "release": "1.0",
            "stage": "full",
            "env": "prod",
            "reason": "x",
            "confirmed": "yes",
        },
    )
    assert answer.status_code == 409 and "frozen" in answer.text  # the freeze added meanwhile
    assert carol.get("/").status_code == 303  # removed: signed out at once
    assert "changed: read again" in warned[-1]
    site.path.write_text(text + "dashboard_typo: {}\n")
    assert bob.get("/").status_code == 200  # the last good configuration goes on
    assert "dashboard_typo" in warned[-1] and "goes on with the configuration it read before" in warned[-1]
    assert carol.get("/").status_code == 303


def test_unlock_from_the_page_is_refused_while_the_holder_lives(site: Site) -> None:
    import os
    from datetime import UTC, datetime, timedelta

    from releaser.model import Lock
    from releaser.processes import this_machine

    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    alive = Lock("prod", "ci", os.getppid(), this_machine(), "promote 1.0 --to gray", utcnow(), soon, "t")
    site.store.acquire_lock(alive, lambda _held: False)
    alice = site.client("alice")
    assert "/act/unlock?env=prod" not in alice.get("/environments/prod").text  # offered for a stale lock only
    page = alice.get("/act/unlock", params={"env": "prod"})
    assert "its holder is alive: unlocking will be refused" in page.text and "promote 1.0 --to gray" in page.text
    form = {"token": token_of(page.text), "env": "prod", "reason": "stuck?", "confirmed": "yes"}
    answer = alice.post("/act/unlock", data=form)
    assert answer.status_code == 409 and "which is alive and renews its lease" in answer.text
    assert site.store.get_lock("prod") is not None and not site.store.find_events(kind="lock.cleared")
    site.store.force_unlock("prod")
    gone = Lock("prod", "ci", 2**22 + 17, this_machine(), "promote 1.0 --to gray", utcnow(), soon, "t")  # no such pid
    site.store.acquire_lock(gone, lambda _held: False)
    assert "/act/unlock?env=prod" in alice.get("/environments/prod").text
    page = alice.get("/act/unlock", params={"env": "prod"})
    done = alice.post("/act/unlock", data={**form, "token": token_of(page.text)}, follow_redirects=True)
    assert done.status_code == 200 and "lock of ci cleared" in done.text and site.store.get_lock("prod") is None


def test_pages_offer_approval_only_where_it_would_be_taken(tmp_path: Path) -> None:
    freeze = 'freeze:\n  - {name: audit, from: "2000-01-01 00:00", until: "2999-01-01 00:00", timezone: UTC}\n'
    frozen = Site(tmp_path / "frozen", top=freeze)
    frozen.release("1.0")
    page = frozen.client("bob").get("/releases/1.0").text
    assert "/act/approve?release=1.0" not in page and "frozen: approve after the freeze" in page
    assert "/act/reject?release=1.0" in page  # a rejection is never frozen
    named = Site(tmp_path / "named", full_approval="{approvers: [bob]}")
    named.release("1.0", asked_by="carol")
    assert "/act/approve?release=1.0" not in named.client("alice").get("/releases/1.0").text  # not among them
    bob = named.client("bob")
    assert "/act/approve?release=1.0" in bob.get("/releases/1.0").text
    done = decide(bob, "approve", "1.0")
    assert "approved by bob" in done.text and "The stage starts when its promotion runs again" in done.text
    overview = named.client("carol").get("/").text
    assert "nothing deployed · 2 hosts" in overview and "consistent" not in overview.split("nothing deployed")[1][:40]


def test_an_evidence_chart_without_a_request_is_not_drawn() -> None:
    from releaser.web.charts import evidence_chart

    quiet = {"cohort_events": 0, "cohort_requests": 0, "baseline_events": 0, "baseline_requests": 0, "ratio": 1.5}
    assert evidence_chart([{"at": "2026-12-06T10:00:00+00:00", **quiet}], "errors") == ""
    counted = {**quiet, "cohort_requests": 10, "baseline_requests": 90}
    drawn = evidence_chart([{"at": "2026-12-06T10:00:00+00:00", **counted}], "errors")
    assert drawn.startswith("<svg") and drawn.count("<polyline") == 3  # zero is a measured value: drawn


def test_validate_warns_of_approvers_who_are_not_dashboard_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(tmp_path / "proj", full_approval="{approvers: [bob, bobb]}")
    monkeypatch.delenv("RELEASER_DASHBOARD_SECRET", raising=False)
    checked = CliRunner().invoke(cli, ["-C", str(tmp_path / "proj"), "validate"])
    assert "$RELEASER_DASHBOARD_SECRET is not set here: `serve` would not start" in checked.output
    assert checked.exit_code == 0, checked.output
    assert "full's approvers name bobb, who is not under dashboard.users" in checked.output
    assert "approvers name bob," not in checked.output


def test_an_approval_through_a_freeze_needs_force_and_is_journaled(tmp_path: Path) -> None:
    """A freeze refuses an approval (from the page and the CLI); `approve --force` overrides it,
    journaled as a freeze override, so a freeze and an approval never deadlock a fix."""
    freeze = 'freeze:\n  - {name: audit, from: "2000-01-01 00:00", until: "2999-01-01 00:00", timezone: UTC}\n'
    site = Site(tmp_path / "proj", top=freeze)
    site.release("1.0", asked_by="alice")
    runner = CliRunner(env={"RELEASER_ACTOR": "bob", "NO_COLOR": "1"})
    args = ["-C", str(site.path.parent), "approve", "1.0", "--stage", "full", "--reason", "hotfix INC-9"]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 3 and "releaser approve 1.0 --stage full --force --reason TEXT" in refused.output
    forced = runner.invoke(cli, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    (override,) = site.store.find_events(kind="freeze.overridden")
    assert override.data["by"] == "bob" and override.data["reason"] == "hotfix INC-9"
    assert site.store.approvals("1.0")[0].state is ApprovalState.APPROVED
