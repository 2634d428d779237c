"""Team chat robots on loopback: DingTalk, WeCom and Feishu webhooks, each checking the message
shape and the signature as the vendor's documentation describes it (written here apart from
releaser's own code), and answering with the robot's own error codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from releaser import chat

DING_SECRET, FEISHU_SECRET = "SECdingdingsecret0123456789", "feishu-signing-secret-42"
DING_TOKEN, WECOM_KEY, FEISHU_HOOK = "ding-access-token-987", "wecom-key-6543", "feishu-hook-id-321"


class Robots:
    """One server, three robots: /dingtalk/robot/send, /wecom/cgi-bin/webhook/send, /feishu/open-apis/bot/v2/hook/ID.
    `refuse` makes a robot answer 200 with its error code."""

    def __init__(self):
        self.messages: dict[str, list[str]] = {"dingtalk": [], "wecom": [], "feishu": []}
        self.refuse: set[str] = set()
        robots = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                robot = parts.path.split("/")[1]
                answer = getattr(robots, robot)(parts.path, query, body)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def dingtalk(self, path, query, body):
        # https://open.dingtalk.com: sign = urlEncode(base64(HmacSHA256(secret, timestamp + "\n" + secret)))
        if query.get("access_token") != DING_TOKEN:
            return {"errcode": 300001, "errmsg": "token is not exist"}
        stamp = query.get("timestamp", "0")
        wanted = base64.b64encode(
            hmac.new(DING_SECRET.encode(), f"{stamp}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
        ).decode()
        if query.get("sign") != wanted or abs(time.time() * 1000 - int(stamp)) > 3600_000:
            return {"errcode": 310000, "errmsg": "sign not match"}
        if "dingtalk" in self.refuse:
            return {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
        assert body["msgtype"] == "text"
        self.messages["dingtalk"].append(body["text"]["content"])
        return {"errcode": 0, "errmsg": "ok"}

    def wecom(self, path, query, body):
        if query.get("key") != WECOM_KEY:
            return {"errcode": 93000, "errmsg": "invalid webhook url"}
        assert body["msgtype"] == "text"
        self.messages["wecom"].append(body["text"]["content"])
        return {"errcode": 0, "errmsg": "ok"}

    def feishu(self, path, query, body):
        # https://open.feishu.cn: sign = base64(HmacSHA256(key = timestamp + "\n" + secret, message = ""))
        if not path.endswith(f"/hook/{FEISHU_HOOK}"):
            return {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}
        stamp = body.get("timestamp", "0")
        wanted = base64.b64encode(hmac.new(f"{stamp}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256).digest()).decode()
        if body.get("sign") != wanted or abs(time.time() - int(stamp)) > 3600:
            return {"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}
        assert body["msg_type"] == "text"
        self.messages["feishu"].append(body["content"]["text"])
        return {"code": 0, "msg": "success", "data": {}}


@pytest.fixture
def robots():
    server = Robots()
    yield server
    server.httpd.shutdown()


def _chat_config(project, robots, secret_env="DING_SECRET") -> None:
    config = project.dir / "environments.yaml"
    config.write_text(
        config.read_text()
        + f"""\
notifications:
  webhooks:
    - url_env: DING_URL
      format: dingtalk
      secret_env: {secret_env}
      events: [stage.failed, rollback.done]
    - url: {robots.url}/wecom/cgi-bin/webhook/send?key={WECOM_KEY}
      format: wecom
      events: [stage.failed]
    - url_env: FEISHU_URL
      format: feishu
      secret_env: FEISHU_SECRET
      events: [stage.failed, rollback.done]
"""
    )


def _environ(robots) -> dict[str, str]:
    return {
        "DING_URL": f"{robots.url}/dingtalk/robot/send?access_token={DING_TOKEN}",
        "DING_SECRET": DING_SECRET,
        "FEISHU_URL": f"{robots.url}/feishu/open-apis/bot/v2/hook/{FEISHU_HOOK}",
        "FEISHU_SECRET": FEISHU_SECRET,
    }


def test_dingtalk_wecom_and_feishu_robots_get_signed_messages(project, robots, monkeypatch):
    for name, value in _environ(robots).items():
        monkeypatch.setenv(name, value)
    _chat_config(project, robots)
    project.register("1.0.0")
    project.register("1.1.0", fail_on=("dev-1",))
    project.cli("promote", "1.0.0", check=True)
    assert project.cli("promote", "1.1.0").returncode == 1
    for robot in ("dingtalk", "feishu"):
        texts = robots.messages[robot]
        assert len(texts) == 2 and texts[0].startswith("[shop] dev 1.1.0: selftest: 1.1.0 failed"), texts
        assert "rolled back" in texts[1] or "rollback" in texts[1]
    assert len(robots.messages["wecom"]) == 1
    history = project.cli("history", "--json", check=True).stdout
    assert "notify.failed" not in history
    for secret in (DING_SECRET, FEISHU_SECRET, DING_TOKEN, FEISHU_HOOK):
        assert secret not in history


def test_a_robot_that_refuses_is_journaled_with_its_words(project, robots, monkeypatch):
    for name, value in _environ(robots).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WRONG_SECRET", "SECnot-the-robot-secret")
    _chat_config(project, robots, secret_env="WRONG_SECRET")
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    project.register("1.1.0", fail_on=("dev-1",))
    assert project.cli("promote", "1.1.0").returncode == 1
    failures = [
        e
        for e in json.loads(project.cli("history", "--json", check=True).stdout)["events"]
        if e["kind"] == "notify.failed"
    ]
    assert failures and all("310000 sign not match" in e["message"] for e in failures)
    assert robots.messages["dingtalk"] == [] and len(robots.messages["feishu"]) == 2  # the others still arrive


def test_chat_payload_shapes_and_refusals():
    url, body = chat.request("dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=t", "hi", "s", now=1.5)
    assert url.startswith("https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1500&sign=")
    assert body == {"msgtype": "text", "text": {"content": "hi"}}
    _, body = chat.request("feishu", "https://open.feishu.cn/open-apis/bot/v2/hook/x", "x" * 5000, "s", now=7)
    assert body["timestamp"] == "7" and len(body["content"]["text"]) == chat.LIMIT
    assert chat.request("wecom", "https://qyapi.weixin.qq.com/x?key=k", "hi")[1]["msgtype"] == "text"
    assert chat.refusal("wecom", {"errcode": 0, "errmsg": "ok"}) is None
    assert chat.refusal("feishu", {"StatusCode": 0}) is None
    assert "19021" in chat.refusal("feishu", {"code": 19021, "msg": "sign match fail"})
    assert chat.refusal("dingtalk", "<html>") == "the robot's answer is not JSON"


def test_a_wecom_secret_is_refused_at_its_line(project):
    config = project.dir / "environments.yaml"
    config.write_text(
        config.read_text() + "notifications:\n  webhooks:\n    - url_env: W\n      format: wecom\n"
        "      secret_env: W_SECRET\n"
    )
    proc = project.cli("validate")
    assert proc.returncode == 2 and "notifications.webhooks[0].secret_env" in proc.stderr
    assert "authorised by the key in its URL" in proc.stderr


def test_the_report_notice_goes_to_a_feishu_robot(project, robots, monkeypatch):
    for name, value in _environ(robots).items():
        monkeypatch.setenv(name, value)
    config = project.dir / "environments.yaml"
    config.write_text(
        config.read_text() + "report:\n  delay: 0s\n  language: en\n"
        "  webhook: {url_env: FEISHU_URL, format: feishu, secret_env: FEISHU_SECRET}\n"
    )
    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    sent = json.loads(project.cli("report", "due", "--send", "--json", check=True).stdout)
    assert [(s["release"], s["state"]) for s in sent["sent"]] == [("1.0.0", "written")]  # no mail: not "sent"
    assert sent["sent"][0]["detail"] == "not mailed: report.mail is not configured"
    [notice] = robots.messages["feishu"]
    assert "1.0.0" in notice and str(project.dir / ".releaser" / "reports") in notice, notice
