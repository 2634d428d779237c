"""Secrets planted in every variable the configuration names, against hostile servers that echo
them back: none appears in anything releaser wrote, nor in a hook's environment."""

from __future__ import annotations

import base64

import pytest

from releaser import secrets
from tests.harness.hostile import secret_scan


@pytest.fixture
def clean_registry():
    secrets.forget_all()
    yield
    secrets.forget_all()


@pytest.mark.real  # every command end to end, bakes and hooks included (20 s)
def test_no_secret_reaches_anything_releaser_writes(tmp_path, clean_registry):
    scan = secret_scan(tmp_path)
    assert scan.exit_codes[:3] == [0, 0, 0], scan.exit_codes  # two releases registered, 1.0.0 through every stage
    assert scan.exit_codes[3] == 1  # 1.1.0 failed safe on the hostile metrics and was rolled back
    assert scan.exit_codes[5] == 0  # the second --send delivered the report
    assert scan.smtp_sessions >= 1 and any(p.startswith("/api/v1/query") for p in scan.http_requests)
    assert any(p.startswith("/services/") for p in scan.http_requests)  # notifications reached the echoing hook
    assert any(p.startswith("/reports/") for p in scan.http_requests)  # and so did the report, once mailed
    assert scan.smtp_sessions >= 2
    written = b"".join(scan.written.values())
    assert b"refused for /api/v1/query" in written  # the hostile replies were recorded, scrubbed
    assert secrets.MASK.encode() in written
    assert any("env-prepare" in where for where in scan.written)  # the hooks' environments are scanned
    assert scan.leaks() == []


def test_scrub_masks_every_form_of_a_registered_secret(clean_registry):
    secrets.register_credentials("user", "p@ss/w+rd=1")
    secrets.register_url("https://hooks.example.org/services/T1/B2/tokenXYZ123?sig=a/b+c")
    basic = base64.b64encode(b"user:p@ss/w+rd=1").decode()
    text = (
        f"p@ss/w+rd=1 p%40ss%2Fw%2Brd%3D1 p%40ss/w%2Brd%3D1 Basic {basic} /services/T1/B2/tokenXYZ123 "
        "https://hooks.example.org/services/T1/B2/tokenXYZ123?sig=a%2Fb%2Bc a/b+c"
    )
    scrubbed = secrets.scrub(text)
    for leaked in ("p@ss", "p%40ss", basic, "tokenXYZ123", "a/b+c", "a%2Fb"):
        assert leaked not in scrubbed, (leaked, scrubbed)
    assert secrets.scrub_data({"k": [text], "n": 1}) == {"k": [scrubbed], "n": 1}
    secrets.register("abc")  # too short to mask without mangling ordinary words
    assert secrets.scrub("abc") == "abc"
