"""Dashboard passwords as slow hashes: scrypt (the standard library's), salted, with its cost in
the stored text so a later, costlier setting still reads older hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

_COST = (2**15, 8, 1)  # n, r, p: about 0.1 s and 32 MiB per check on a server
_SHAPE = re.compile(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]{16,})\$([A-Za-z0-9+/=]{32,})")
_MAX_MEMORY = 256 * 1024 * 1024


def hash_password(password: str) -> str:
    n, r, p = _COST
    salt = os.urandom(16)
    digest = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def problem(stored: str) -> str | None:
    """Why `stored` is not a whole hash this module wrote (with a cost it accepts), or None."""
    if not stored.startswith("scrypt$"):
        return "expected a hash written by `releaser serve --hash-password` (scrypt$...), never the password itself"
    found = _SHAPE.fullmatch(stored)
    if found is None or _decoded(found.group(4), 16) is None or _decoded(found.group(5), 32) is None:
        return (
            "this hash is cut or altered: paste the whole line `releaser serve --hash-password` printed "
            "(scrypt$N$r$p$salt$digest)"
        )
    n, r, p = (int(found.group(i)) for i in (1, 2, 3))
    if not (2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 16 and 1 <= p <= 4 and 128 * n * r <= _MAX_MEMORY):
        return f"this hash's cost (N={n}, r={r}, p={p}) is outside what releaser accepts: hash the password again"
    return None


def _decoded(text: str, at_least: int) -> bytes | None:
    """The base64 text's bytes when it is whole and long enough, else None."""
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error: bad padding or a stray character
        return None
    return data if len(data) >= at_least else None


def check_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches; a user without a hash costs the same time and fails."""
    found = _SHAPE.fullmatch(stored) if stored and problem(stored) is None else None
    if found is None:
        _scrypt(password, b"no such user here", *_COST)
        return False
    n, r, p = (int(found.group(i)) for i in (1, 2, 3))
    salt, expected = _decoded(found.group(4), 16), _decoded(found.group(5), 32)
    assert salt is not None and expected is not None  # noqa: S101 - problem() decoded them
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(expected)), expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEMORY, dklen=length)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
