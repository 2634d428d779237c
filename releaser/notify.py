"""Webhook notifications of stage start, pass, fail, rollback, alarms and drills: as JSON, or as a
message in the team's chat (Slack, DingTalk, WeCom, Feishu; see chat.py).

Deliveries happen on a background thread, retried with tenacity, so that a slow or broken
receiver never delays a rollback. URLs may carry tokens: they are never logged (only their
scheme and host) and may be read from the environment (`url_env`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import model, secrets
from .events import Event
from .journal import Journal, Sink
from .model import Config, Webhook
from .store import Store

if TYPE_CHECKING:
    from .approvalmail import ApprovalMail

ICONS: dict[str, str] = {  # what a Slack message of each kind starts with
    Event.STAGE_PASSED: ":white_check_mark:",
    Event.STAGE_FAILED: ":x:",
    Event.ROLLBACK_DONE: ":leftwards_arrow_with_hook:",
    Event.ROLLBACK_INCOMPLETE: ":rotating_light:",
    Event.ALARM: ":rotating_light:",
    Event.STAGE_STARTED: ":arrow_forward:",
    Event.BAKE_TOO_SHORT: ":hourglass:",
    Event.MIGRATION_DONE: ":card_file_box:",
    Event.MIGRATION_FAILED: ":x:",
    Event.DRILL_DONE: ":fire_drill:",
    Event.APPROVAL_REQUESTED: ":raising_hand:",
}

OnFailure = Callable[[str, dict], None]


def _url(hook: Webhook) -> str:
    """The hook's URL ("" when its variable is unset); one read from the environment is a secret,
    registered as such."""
    return hook.url or secrets.read_env(hook.url_env, url=True)


def webhook_url(hook: Webhook) -> str:
    """The hook's URL; refused when its variable is not set where releaser runs."""
    url = _url(hook)
    if not url:
        raise Refused(f"${hook.url_env} is not set where releaser runs (the webhook's url_env)")
    return url


def shown_hook(hook: Webhook) -> str:
    """Where a hook posts, for a message: its scheme and host only, or its unset variable."""
    url = _url(hook)
    return redact(url) if url else f"${hook.url_env}"


def redact(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


class Refused(Exception):
    """The message could not go: the receiver answered 200 but did not take it (a chat robot's
    error code), or the hook's address is not set."""


def event_text(project: str, hook: Webhook, event: model.Event) -> str:
    """An event in one line, as a chat shows it (Slack's control characters escaped: a reason
    typed by someone never pings a channel)."""
    scope = " ".join(x for x in (event.environment, event.release) if x)
    if hook.format == "slack":
        text = f"{ICONS.get(event.kind, '')} *{project}* {scope}: {event.message}".strip()
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"[{project}] {scope}: {event.message}"


def deliver(hook: Webhook, text: str, document: dict, headers: dict[str, str] | None = None) -> None:
    """Post to the hook, retried: `document` as JSON, or `text` in a chat's own message (Slack,
    DingTalk, WeCom, Feishu; signed when the hook has a secret). Raises when it did not arrive."""
    import requests  # on the notifier's thread: commands that notify nothing start faster
    from tenacity import Retrying, stop_after_attempt, wait_random_exponential

    from . import chat

    address = webhook_url(hook)  # an unset variable is refused once, not retried
    for attempt in Retrying(
        stop=stop_after_attempt(3), wait=wait_random_exponential(multiplier=0.5, max=5), reraise=True
    ):
        with attempt:
            url = address
            if hook.format in chat.FORMATS:  # signed anew at each attempt: the signature carries the time
                url, body = chat.request(hook.format, address, text, secrets.read_env(hook.secret_env))
            else:
                body = {"text": text} if hook.format == "slack" else document
            response = requests.post(url, json=body, timeout=hook.timeout, headers=headers or {})
            response.raise_for_status()
            if hook.format in chat.FORMATS:
                try:
                    answer = response.json()
                except ValueError:
                    answer = None
                refused = chat.refusal(hook.format, answer)
                if refused:
                    raise Refused(refused)


class Notifier:
    """A journal listener that posts selected events to webhooks (and mails approval requests to
    who may decide them), in order, off the caller's thread."""

    def __init__(
        self,
        project: str,
        webhooks: tuple[Webhook, ...],
        on_failure: OnFailure | None = None,
        mail: ApprovalMail | None = None,
    ):
        self.project, self.webhooks, self.on_failure, self.mail = project, webhooks, on_failure, mail
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
        self._thread.start()

    def __call__(self, event: model.Event) -> None:
        for hook in self.webhooks:
            if event.kind in hook.events:
                self._queue.put((hook, event))
        if self.mail is not None and self.mail.concerns(event):
            self._queue.put((self.mail, event))

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (waiting at most `timeout`), then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            target, event = item
            try:
                if isinstance(target, Webhook):
                    self._post(target, event)
                else:
                    target.deliver(event)
            except Exception as exc:
                if self.on_failure:
                    self._failed(target, event, exc)

    def _failed(self, target: Webhook | ApprovalMail, event: model.Event, exc: Exception) -> None:
        assert self.on_failure is not None  # noqa: S101 - called only when there is one
        if isinstance(target, Webhook):
            url = _url(target)
            where, error = shown_hook(target), str(exc).replace(url, "<url>") if url else str(exc)
            said = exc if isinstance(exc, Refused) else type(exc).__name__
        else:
            where, error = f"{', '.join(target.recipients(event))} by mail", str(exc)
            said = f"{type(exc).__name__}: {exc}"
        self.on_failure(
            f"notification of {event.kind} to {where} failed: {said}",
            {"event": event.id, "kind": event.kind, "error": secrets.scrub(error)[:200]},
        )

    def _post(self, hook: Webhook, event: model.Event) -> None:
        deliver(hook, event_text(self.project, hook, event), {"project": self.project, **asdict(event)})


def open_journal(store: Store, sink: Sink | None, config: Config) -> tuple[Journal, Notifier | None]:
    """A journal whose events also go to the configured webhooks, and whose approval requests are
    mailed to the dashboard users who may decide them (close the notifier at exit)."""
    mail = _approval_mail(config)
    if not config.webhooks and mail is None:
        return Journal(store, sink), None
    quiet = Journal(store, sink)  # failures are journaled, and not notified again

    def failed(message: str, data: dict) -> None:
        quiet.record(Event.NOTIFY_FAILED, message, data=data)

    notifier = Notifier(config.project, config.webhooks, failed, mail)
    return Journal(store, sink, (notifier,)), notifier


def _approval_mail(config: Config) -> ApprovalMail | None:
    """Who approval requests are mailed to, when a dashboard user has an address and report.mail
    is set (the SMTP modules are loaded only then)."""
    dashboard, mail = config.dashboard, config.report.mail
    users = tuple(u for u in (dashboard.users.values() if dashboard else ()) if u.email)
    if dashboard is None or mail is None or not users:
        return None
    from .approvalmail import ApprovalMail

    return ApprovalMail(config, mail, users, dashboard.language or config.report.language)
