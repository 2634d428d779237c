"""Rollback on alerts: Alertmanager's webhook, received by `releaser watch --listen ADDR`.

An environment opts in with `alerts: {match: '{service="shop", env="prod"}'}`. A notification
must carry the bearer token from the variable `--token-env` names; anything else, or a payload
that does not read as Alertmanager's, gets 401 or 400 and changes nothing. A firing alert group
whose alerts match an environment is stored once per firing episode (Alertmanager repeats its
notifications: the group, the environment and the earliest start make one episode), and the
watch acts on it at once: it aborts the promotion in progress there, or rolls back the release
inside its rollback window, journaled as an incident whose cause is the alert.

Requests are served one at a time, from one thread: Alertmanager sends little, and one thread
keeps one connection to the state.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

from .model import AlertRecord, Environment
from .store import Store, StoreError

MAX_BODY = 1 << 20
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


class BadPayload(ValueError):
    """Not an Alertmanager webhook notification (version 4)."""


def firing_groups(body: bytes, environments: dict[str, Environment]) -> list[AlertRecord]:
    """The alert group of one notification, per environment whose rule its firing alerts match."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayload(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("alerts"), list):
        raise BadPayload("expected an object with a list of `alerts`")
    group_key = data.get("groupKey")
    if not isinstance(group_key, str) or not group_key:
        raise BadPayload("expected a `groupKey`")
    firing = []
    for index, alert in enumerate(data["alerts"]):
        if not isinstance(alert, dict):
            raise BadPayload(f"alerts[{index}] is not an object")
        labels, annotations = alert.get("labels"), alert.get("annotations", {})
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise BadPayload(f"alerts[{index}].labels must map names to strings")
        if not isinstance(annotations, dict):
            raise BadPayload(f"alerts[{index}].annotations must be an object")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise BadPayload(f"alerts[{index}].status must be firing or resolved")
        if status == "firing":
            firing.append((labels, annotations, _timestamp(alert.get("startsAt"), index)))
    found = []
    for name, env in environments.items():
        if env.alerts is None:
            continue
        mine = [a for a in firing if env.alerts.match.matches_labels(a[0])]
        if not mine:
            continue
        labels, annotations, _ = min(mine, key=lambda a: a[2])
        summary = str(annotations.get("summary") or annotations.get("description") or "")[:300]
        found.append(
            AlertRecord(
                group_key[:500], name, min(a[2] for a in mine), labels.get("alertname", "alert")[:200], labels, summary
            )
        )
    return found


def _timestamp(value: object, index: int) -> str:
    """Alertmanager's RFC 3339 time (nanoseconds, Z) as the store's ISO form."""
    if not isinstance(value, str):
        raise BadPayload(f"alerts[{index}].startsAt must be a time")
    try:
        when = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00"))
    except ValueError:
        raise BadPayload(f"alerts[{index}].startsAt is not a time: {value[:40]!r}") from None
    if when.tzinfo is None:
        raise BadPayload(f"alerts[{index}].startsAt has no time zone")
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) to listen on."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class AlertReceiver:
    """The webhook endpoint: POST / (or /alerts) with `Authorization: Bearer TOKEN`."""

    def __init__(
        self,
        address: tuple[str, int],
        token: str,
        store: Store,
        environments: dict[str, Environment],
        received: Callable[[list[AlertRecord]], None],
    ):
        receiver = self
        self.store, self.environments, self.received = store, environments, received

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a client that stops sending does not hold the endpoint

            def do_POST(self) -> None:
                if self.path.split("?")[0] not in ("/", "/alerts"):
                    return self._answer(404, "unknown path: POST / or /alerts")
                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    return self._answer(401, "a bearer token is required")
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    return self._answer(411, "Content-Length is required")
                if not 0 <= length <= MAX_BODY:
                    return self._answer(413, f"at most {MAX_BODY} bytes")
                try:
                    records = firing_groups(self.rfile.read(length), receiver.environments)
                except BadPayload as exc:
                    return self._answer(400, str(exc))
                try:
                    new = [r for r in records if receiver.store.record_alert(r)]
                except StoreError as exc:  # Alertmanager sends it again
                    return self._answer(503, f"cannot record the alert now: {exc}")
                if new:
                    receiver.received(new)
                return self._answer(200, f"{len(new)} new")

            def do_GET(self) -> None:
                self._answer(405, "POST Alertmanager's webhook notifications here")

            def _answer(self, code: int, text: str) -> None:
                body = json.dumps({"status": "ok" if code == 200 else "error", "message": text}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = HTTPServer(address, Handler)
        self.address = self.server.server_address
        self._thread = threading.Thread(target=self.server.serve_forever, name="alerts", daemon=True)

    def start(self) -> AlertReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
