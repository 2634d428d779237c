"""How releaser asks a registry for a tag's digest, in-process against a loopback registry that
speaks the distribution API's token flow (Docker Hub's, GitLab's, Harbor's): the challenge, the
token fetched with the credentials, the token kept out of everything releaser writes, and a
registry that lies about a digest."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from releaser import secrets
from releaser.errors import UsageError
from releaser.images import parse_image, resolve
from releaser.model import RegistrySpec
from tests.harness.loopback import Loopback, QuietHandler

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": 100,
            "digest": "sha256:" + "1" * 64,
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 2000, "digest": "sha256:" + "2" * 64}
        ],
    }
).encode()
TOKEN = "eyJ-token-0123456789abcdef"


class TokenRegistry(Loopback):
    """Answers manifests only with a bearer token its /token endpoint gives for user:secret-pw."""

    def __init__(self, told_digest: str | None = None):
        self.token_requests: list[dict] = []
        registry = self

        class Handler(QuietHandler):
            def do_GET(self):
                if self.path.startswith("/token"):
                    expected = "Basic " + base64.b64encode(b"user:secret-pw").decode()
                    registry.token_requests.append({"path": self.path, "auth": self.headers.get("Authorization")})
                    if self.headers.get("Authorization") != expected:
                        self.send_response(401)
                        self.end_headers()
                        return
                    self._send(200, json.dumps({"token": TOKEN}).encode(), {})
                elif self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    challenge = f'Bearer realm="{registry.url}/token",service="lab",scope="repository:shop:pull"'
                    self._send(401, b"{}", {"WWW-Authenticate": challenge})
                elif self.path == "/v2/shop/manifests/2.4.0":
                    digest = told_digest or "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
                    self._send(200, MANIFEST, {"Docker-Content-Digest": digest})
                else:
                    self._send(404, b"{}", {})

            def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)
        self.address = f"127.0.0.1:{self.port}"


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("REG_USER", "user")
    monkeypatch.setenv("REG_PASSWORD", "secret-pw")
    yield
    secrets.forget_all()


def test_a_bearer_token_is_fetched_with_the_credentials_and_kept_secret(credentials):
    registry = TokenRegistry()
    try:
        spec = RegistrySpec(registry.address, insecure=True, username_env="REG_USER", password_env="REG_PASSWORD")
        resolved = resolve(parse_image(f"{registry.address}/shop:2.4.0"), spec)
    finally:
        registry.close()
    assert resolved.digest == "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
    assert resolved.size == 2100  # the config and the layers
    assert "scope=repository%3Ashop%3Apull" in registry.token_requests[0]["path"]
    assert secrets.scrub(f"Authorization: Bearer {TOKEN}") == "Authorization: Bearer [secret]"


def test_without_credentials_the_token_service_refuses_and_releaser_says_what_to_set(monkeypatch):
    registry = TokenRegistry()
    try:
        with pytest.raises(UsageError, match=r"refused to show shop \(401\): set its credentials"):
            resolve(parse_image(f"{registry.address}/shop:2.4.0"), RegistrySpec(registry.address, insecure=True))
    finally:
        registry.close()


def test_a_digest_header_that_does_not_match_the_manifest_is_refused(credentials):
    registry = TokenRegistry(told_digest="sha256:" + "f" * 64)
    try:
        spec = RegistrySpec(registry.address, insecure=True, username_env="REG_USER", password_env="REG_PASSWORD")
        with pytest.raises(UsageError, match="whose digest is sha256:"):
            resolve(parse_image(f"{registry.address}/shop:2.4.0"), spec)
    finally:
        registry.close()
