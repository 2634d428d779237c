"""Webhook notifications of stage start, pass, fail, rollback and alarms.

Deliveries happen on a background thread, retried with tenacity, so that a slow or broken
receiver never delays a rollback. URLs may carry tokens: they are never logged (only their
scheme and host) and may be read from the environment (`url_env`).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import asdict
from typing import Callable
from urllib.parse import urlsplit

from . import secrets
from .journal import Journal, Sink
from .model import Event, Webhook
from .store import Store

_ICONS = {"stage.passed": ":white_check_mark:", "stage.failed": ":x:", "rollback.done": ":leftwards_arrow_with_hook:",
          "rollback.failed": ":rotating_light:", "alarm": ":rotating_light:", "stage.started": ":arrow_forward:"}

OnFailure = Callable[[str, dict], None]


def webhook_url(hook: Webhook) -> str:
    """The hook's URL; one read from the environment is a secret, registered as such."""
    return hook.url or secrets.read_env(hook.url_env, url=True)


def redact(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


def payload(project: str, hook: Webhook, event: Event) -> dict:
    if hook.format == "slack":
        scope = " ".join(x for x in (event.environment, event.release) if x)
        return {"text": f"{_ICONS.get(event.kind, '')} *{project}* {scope}: {event.message}".strip()}
    return {"project": project, **asdict(event)}


class Notifier:
    """A journal listener that posts selected events to webhooks, in order, off the caller's thread."""

    def __init__(self, project: str, webhooks: tuple[Webhook, ...], on_failure: OnFailure | None = None):
        self.project, self.webhooks, self.on_failure = project, webhooks, on_failure
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        for hook in self.webhooks:
            if event.kind in hook.events:
                self._queue.put((hook, event))

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (waiting at most `timeout`), then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            hook, event = item
            try:
                self._post(hook, event)
            except Exception as exc:  # noqa: BLE001 - reported, never raised
                if self.on_failure:
                    self.on_failure(
                        f"notification of {event.kind} to {redact(webhook_url(hook))} failed: {type(exc).__name__}",
                        {"event": event.id, "kind": event.kind,
                         "error": secrets.scrub(str(exc).replace(webhook_url(hook), "<url>"))[:200]},
                    )

    def _post(self, hook: Webhook, event: Event) -> None:
        import requests  # on the notifier's thread: commands that notify nothing start faster
        from tenacity import Retrying, stop_after_attempt, wait_random_exponential

        for attempt in Retrying(stop=stop_after_attempt(3), wait=wait_random_exponential(multiplier=0.5, max=5),
                                reraise=True):
            with attempt:
                response = requests.post(webhook_url(hook), json=payload(self.project, hook, event),
                                         timeout=hook.timeout)
                response.raise_for_status()


def open_journal(store: Store, sink: Sink | None, project: str, webhooks: tuple[Webhook, ...]) -> tuple[Journal, Notifier | None]:
    """A journal whose events also go to the configured webhooks (close the notifier at exit)."""
    if not webhooks:
        return Journal(store, sink), None
    quiet = Journal(store, sink)  # failures are journaled, and not notified again
    notifier = Notifier(project, webhooks, lambda message, data: quiet.record("notify.failed", message, data=data))
    return Journal(store, sink, (notifier,)), notifier
