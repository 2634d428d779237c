"""Secrets: registered by value where they are read, scrubbed by value from whatever releaser writes.

Credentials live in environment variables the configuration names (`bearer_env`, `password_env`,
`url_env`, ...). Each value read is registered here with the forms it takes on the way out: URL-
encoded (requests re-quotes URLs; servers echo them), base64 (HTTP basic and SMTP AUTH), JSON- and
repr-escaped. Every writer (the terminal, --json, the journal and state, notifications, reports)
passes its text through `scrub`, so a server that echoes a credential, or an exception that carries
a URL, never gets it onto disk, a screen or the wire.
"""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "[secret]"
MIN_LENGTH = 4  # shorter values would mask ordinary words; such secrets are too weak to keep anyway
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"  # what requests leaves unquoted in a URL

_forms: set[str] = set()
_pattern: re.Pattern | None = None


def register(value: str | None) -> None:
    """Remember a secret value and the encoded forms it may take in output."""
    global _pattern
    if not value or len(value) < MIN_LENGTH:
        return
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        quote(value, safe=_URL_SAFE),
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
        _b64(value),
        _b64(value).rstrip("="),
    }
    new = {form for form in forms if len(form) >= MIN_LENGTH} - _forms
    if new:
        _forms.update(new)
        _pattern = None


def register_credentials(user: str | None, password: str | None) -> None:
    """A user and password: the password, and the base64 forms of HTTP basic and SMTP AUTH PLAIN."""
    register(password)
    if user and password:
        for joined in (f"{user}:{password}", f"\0{user}\0{password}", f"{user}\0{user}\0{password}"):
            register(_b64(joined))
            register(_b64(joined).rstrip("="))


def register_url(url: str | None) -> None:
    """A URL that is itself a secret (a webhook with its token in the path or query)."""
    if not url:
        return
    register(url)
    register(unquote(url))
    parts = urlsplit(url)
    if len(parts.path) > 1:
        register(parts.path + (f"?{parts.query}" if parts.query else ""))
        register(parts.path)
    for pair in parts.query.split("&"):  # each value as written, and as decoded
        raw = pair.partition("=")[2]
        register(raw)
        register(unquote(raw))
    register_url_password(url)


def register_url_password(url: str | None) -> None:
    """The password in a URL's user info (http://user:password@host/), whatever the URL."""
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return
    if parts.password:
        register_credentials(unquote(parts.username or ""), unquote(parts.password))
        register(parts.password)


def read_env(name: str | None, *, url: bool = False) -> str:
    """The value of an environment variable the configuration names as holding a secret."""
    value = os.environ.get(name, "") if name else ""
    (register_url if url else register)(value)
    return value


def registered() -> bool:
    """Whether any secret has been registered (writers skip scrubbing otherwise)."""
    return bool(_forms)


def read_credentials(user_env: str | None, password_env: str | None) -> tuple[str, str]:
    """A user and password from the variables the configuration names; the password and
    its base64 forms are registered."""
    user, password = os.environ.get(user_env, "") if user_env else "", read_env(password_env)
    register_credentials(user, password)
    return user, password


def scrub(text: str) -> str:
    """`text` with every registered secret, in every form, replaced by MASK."""
    global _pattern
    if not _forms or not text:
        return text
    if _pattern is None:
        _pattern = re.compile("|".join(re.escape(form) for form in sorted(_forms, key=len, reverse=True)))
    return _pattern.sub(MASK, text)


def scrub_data(value: Any) -> Any:
    """`scrub` through the strings of a JSON-like value (dicts, lists, tuples)."""
    if not _forms:
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_data(k): scrub_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_data(v) for v in value)
    return value


def forget_all() -> None:
    """Drop every registered secret (tests that plant their own)."""
    global _pattern
    _forms.clear()
    _pattern = None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
