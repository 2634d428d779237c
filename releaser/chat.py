"""Team chat robots: the messages and signatures of DingTalk, WeCom and Feishu webhooks.

Each robot takes a text message in its own shape, and answers HTTP 200 even when it refuses
one: the refusal is in the body (`errcode` for DingTalk and WeCom, `code` for Feishu), and is
read as a failure here. DingTalk and Feishu robots with signing ("加签" / "签名校验") need each
request signed with the robot's secret, read from the variable `secret_env` names; a WeCom
robot is authorised by the key in its URL alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote_plus

FORMATS = ("dingtalk", "wecom", "feishu")
LIMIT = 4000  # characters of text: every robot takes at least this much


def request(fmt: str, url: str, text: str, secret: str = "", now: float | None = None) -> tuple[str, dict]:
    """The URL to post to (signed, for DingTalk) and the JSON body of a text message."""
    text = text if len(text) <= LIMIT else text[: LIMIT - 1] + "…"
    now = time.time() if now is None else now
    if fmt == "dingtalk":
        if secret:
            stamp = str(int(now * 1000))
            sign = _hmac(secret.encode(), f"{stamp}\n{secret}".encode())
            url += ("&" if "?" in url else "?") + f"timestamp={stamp}&sign={quote_plus(sign)}"
        return url, {"msgtype": "text", "text": {"content": text}}
    if fmt == "wecom":
        return url, {"msgtype": "text", "text": {"content": text}}
    if fmt == "feishu":
        body: dict = {"msg_type": "text", "content": {"text": text}}
        if secret:
            stamp = str(int(now))
            body = {"timestamp": stamp, "sign": _hmac(f"{stamp}\n{secret}".encode(), b""), **body}
        return url, body
    raise ValueError(f"not a chat format: {fmt}")


def refusal(fmt: str, answer: object) -> str | None:
    """What the robot's answer says went wrong, or None when it took the message."""
    if not isinstance(answer, dict):
        return "the robot's answer is not JSON"
    code = answer.get("code", answer.get("StatusCode")) if fmt == "feishu" else answer.get("errcode", 0)
    if code == 0:
        return None
    words = answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or ""
    return f"the robot refused the message: {code} {words}".strip()


def _hmac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
