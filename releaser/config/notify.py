"""The `notifications:` section: webhooks and chat robots that are sent journal events, and
the URL and format keys the report's webhook shares with them."""

from __future__ import annotations

from ..events import STORED, Event
from ..model import Webhook
from ..names import DEFAULT_EVENTS
from ..schema import Fields, did_you_mean, shown
from .rules import WEBHOOK_FORMATS


def read_webhooks(top: Fields) -> tuple[Webhook, ...]:
    section = top.mapping("notifications")
    if section is None:
        return ()
    hooks = []
    for item, line, key in section.items("webhooks"):
        fields = Fields(item, section.file, key, section.problems, line)
        url, url_env = read_webhook_url(fields)
        events = []
        for event, event_line, event_key in fields.items("events"):
            if event not in STORED:
                section.problems.add(
                    fields.file,
                    event_line,
                    event_key,
                    f"got {shown(event)}{did_you_mean(str(event), STORED)}: expected an event kind (releaser/events.py "
                    f"lists them all; without `events:` a webhook is sent {', '.join(DEFAULT_EVENTS)})",
                )
            else:
                events.append(Event(event))
        fmt, secret_env = read_webhook_format(fields)
        hooks.append(
            Webhook(
                url=url,
                url_env=url_env,
                format=fmt,
                events=tuple(events) or DEFAULT_EVENTS,
                timeout=fields.duration("timeout", 5.0),
                secret_env=secret_env,
            )
        )
        fields.finish()
    section.finish()
    return tuple(hooks)


def read_webhook_url(fields: Fields) -> tuple[str | None, str | None]:
    url, url_env = fields.str("url"), fields.env_name("url_env")
    if (url is None) == (url_env is None):
        fields.problem("url", "give exactly one of url and url_env (the name of a variable holding the URL)")
    elif url is not None and not url.startswith(("http://", "https://")):
        fields.problem("url", f"expected an http:// or https:// URL, got {shown(url)}")
    return url, url_env


def read_webhook_format(fields: Fields) -> tuple[str, str | None]:
    """`format` (json, slack, or a chat robot: dingtalk, wecom, feishu) and the variable holding
    the robot's signing secret (`secret_env`, DingTalk and Feishu)."""
    fmt = fields.str("format", "json", choices=WEBHOOK_FORMATS) or "json"
    secret_env = fields.env_name("secret_env")
    if secret_env and fmt not in ("dingtalk", "feishu"):
        fields.problem(
            "secret_env",
            "only DingTalk and Feishu robots sign their requests"
            + (" (a WeCom robot is authorised by the key in its URL: give it with url_env)" if fmt == "wecom" else ""),
        )
    return fmt, secret_env
