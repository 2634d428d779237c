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


def well_formed(stored: str) -> bool:
    """Whether `stored` is a hash this module wrote (with a cost it accepts)."""
    found = _SHAPE.fullmatch(stored)
    if found is None:
        return False
    n, r, p = (int(found.group(i)) for i in (1, 2, 3))
    return 2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 16 and 1 <= p <= 4 and 128 * n * r <= _MAX_MEMORY


def check_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches; a user without a hash costs the same time and fails."""
    found = _SHAPE.fullmatch(stored or "") if stored and well_formed(stored) else None
    if found is None:
        _scrypt(password, b"no such user here", *_COST)
        return False
    n, r, p = (int(found.group(i)) for i in (1, 2, 3))
    salt, expected = base64.b64decode(found.group(4)), base64.b64decode(found.group(5))
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(expected)), expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEMORY, dklen=length)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
