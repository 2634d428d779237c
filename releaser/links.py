"""Approval links: a dashboard address that opens one approval request, signed with the
dashboard's secret, bound to its release and stage, and expiring. Opening one still needs a
sign-in; the signature only says the link was made by releaser for that request, unaltered."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from urllib.parse import quote, urlencode

from .model import DashboardSpec


def _mac(secret: str, request: int, release: str, stage: str, until: int) -> str:
    message = f"approval\n{request}\n{release}\n{stage}\n{until}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def approval_link(
    base: str, secret: str, request: int, release: str, stage: str, lasts: float, now: float | None = None
) -> str:
    until = int((time.time() if now is None else now) + lasts)
    query = urlencode(
        {"release": release, "stage": stage, "until": until, "sig": _mac(secret, request, release, stage, until)}
    )
    return f"{base}/approvals/{quote(str(request))}?{query}"


def link_problem(
    secret: str, request: int, release: str, stage: str, until: str, signature: str, now: float | None = None
) -> tuple[int, str] | None:
    """Why the link cannot be followed, with its HTTP status (403 altered, 410 expired), or None
    when it is good."""
    if not until.isdigit() or not hmac.compare_digest(_mac(secret, request, release, stage, int(until)), signature):
        return 403, (
            "this approval link was altered, or signed with another secret than this server's (the dashboard's "
            "secret_env must hold the same value where promotions run)"
        )
    if int(until) < (time.time() if now is None else now):
        return 410, "this approval link has expired"
    return None


def signs_here(spec: DashboardSpec) -> bool:
    """Whether approval links made here are signed (the dashboard's secret is set where this runs)."""
    return bool(os.environ.get(spec.secret_env))


def link_for(spec: DashboardSpec | None, request: int, release: str, stage: str) -> str | None:
    """The address a message about an approval request gives: signed when the dashboard's secret
    is set where the promotion runs, else the release's page; None without a dashboard `url`."""
    if spec is None or spec.url is None:
        return None
    if not signs_here(spec):
        return f"{spec.url}/releases/{quote(release)}"
    return approval_link(spec.url, os.environ[spec.secret_env], request, release, stage, spec.link_expires)
