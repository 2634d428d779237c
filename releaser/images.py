"""Container image references, and the digest a registry gives a tag.

An image release is its digest: `release create --image REGISTRY/NAME:TAG` asks the registry
(its HTTP API, as every runtime does) which manifest the tag names now, and records
`REGISTRY/NAME@sha256:...`; hosts pull and run exactly that, whatever the tag names later.
The controller only resolves; hosts pull with their runtime.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from . import secrets
from .errors import UsageError
from .record import Record

if TYPE_CHECKING:
    import requests

    from .model import RegistrySpec

# registry/repository[:tag][@digest], as the distribution spec writes it
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    r"^(?P<registry>[A-Za-z0-9.-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:]+\](?::[0-9]{1,5})?)"
    rf"/(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

# What a runtime accepts as a manifest: single images (OCI and Docker) and multi-platform indexes.
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


class ImageRef(Record, frozen=True):
    """`registry/repository[:tag][@digest]`, read."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    def pinned(self, digest: str) -> str:
        """The reference hosts pull: by digest, never by tag."""
        return f"{self.registry}/{self.repository}@{digest}"

    def __str__(self) -> str:
        return (
            f"{self.registry}/{self.repository}"
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


def parse_image(text: str) -> ImageRef:
    """Read an image reference; UsageError says what is missing (a registry, a tag or digest)."""
    match = _REFERENCE.match(text or "")
    # docker's rule: the first component is a registry when it has a dot or a port, or is localhost
    registry = match["registry"] if match else (text or "").split("/", 1)[0]
    if "/" not in (text or "") or not ("." in registry or ":" in registry or registry == "localhost"):
        raise UsageError(
            f"image {text!r} names no registry: write it in full, like registry.example.com/shop:2.4.0 or "
            "127.0.0.1:5000/shop:2.4.0 (releaser never guesses a registry)"
        )
    if match is None:
        raise UsageError(
            f"image {text!r} is not a valid reference: REGISTRY/NAME:TAG or REGISTRY/NAME@sha256:<64 hex> "
            "(names are lower case: letters, digits, '.', '_', '-' and '/')"
        )
    ref = ImageRef(match["registry"], match["repository"], match["tag"], match["digest"])
    if not ref.tag and not ref.digest:
        raise UsageError(f"image {text!r} names no tag or digest: give one, like {text}:2.4.0")
    return ref


class Resolved(Record, frozen=True):
    digest: str  # sha256:...
    size: int  # the image's bytes (config and layers) when the manifest lists them, else the manifest's


def resolve(ref: ImageRef, registry: RegistrySpec) -> Resolved:
    """Ask the registry which manifest `ref` names (its digest, checked against the body). A
    reference with a digest is looked up too: a digest the registry does not hold is a typo."""
    import requests

    scheme = "http" if registry.insecure else "https"
    url = f"{scheme}://{ref.registry}/v2/{ref.repository}/manifests/{ref.digest or ref.tag}"
    where = f"registry {ref.registry}"
    session = requests.Session()
    session.headers["Accept"] = MANIFEST_TYPES
    verify = registry.ca_file or True  # per request: REQUESTS_CA_BUNDLE would override a session's
    try:
        response = session.get(url, timeout=registry.timeout, verify=verify)
        if response.status_code == 401:
            _authenticate(session, response, ref, registry)
            response = session.get(url, timeout=registry.timeout, verify=verify)
    except requests.exceptions.SSLError as exc:
        raise UsageError(
            f"{where}: TLS failed ({_reason(exc)}); give its CA in `registries: {{{ref.registry}: "
            f"{{ca_file: FILE}}}}`, or `insecure: true` for a plain-HTTP registry on a lab network"
        ) from None
    except requests.RequestException as exc:
        raise UsageError(
            f"{where} cannot be reached ({_reason(exc)}); check the image reference and that this machine "
            "reaches the registry"
        ) from None
    finally:
        session.close()
    if response.status_code == 404:
        what = f"digest {ref.digest}" if ref.digest else f"tag {ref.tag}"
        raise UsageError(f"{where} has no {what} of {ref.repository}: push it first, or check the name")
    if response.status_code in (401, 403):
        raise UsageError(
            f"{where} refused to show {ref.repository} ({response.status_code}): set its credentials with "
            f"`registries: {{{ref.registry}: {{username_env: VAR, password_env: VAR}}}}`"
        )
    if response.status_code != 200:
        raise UsageError(f"{where} answered {response.status_code} for {ref}: {response.text[:200]!r}")
    digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
    told = response.headers.get("Docker-Content-Digest")
    if (told and told != digest) or (ref.digest and ref.digest != digest):
        raise UsageError(f"{where} sent a manifest for {ref} whose digest is {digest}, not {told or ref.digest}")
    return Resolved(digest=digest, size=_size(response) or len(response.content))


def _reason(exc: Exception) -> str:
    """The cause of a failed request in a few words (requests wraps it in layers of repr)."""
    import requests

    text = secrets.scrub(str(exc))
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)|certificate verify failed: ([^'\")\]]+)", text)
    if found:
        return (found.group(1) or f"certificate verify failed: {found.group(2)}").strip()
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    return text[:160]


def _size(response: requests.Response) -> int:
    try:
        manifest = response.json()
        parts = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
        return sum(int(part.get("size") or 0) for part in parts)
    except (ValueError, TypeError, AttributeError):
        return 0


_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def _authenticate(session: requests.Session, challenge: requests.Response, ref: ImageRef, spec: RegistrySpec) -> None:
    """Answer the registry's challenge: HTTP basic, or a bearer token from its token service
    (fetched with the credentials, or anonymously for a public image)."""
    user, password = secrets.read_credentials(spec.username_env, spec.password_env)
    header = challenge.headers.get("WWW-Authenticate", "")
    scheme = header.split(" ", 1)[0].lower()
    if scheme == "basic":
        if user and password:
            session.auth = (user, password)
        return
    if scheme != "bearer":
        return
    params = dict(_CHALLENGE.findall(header))
    realm = params.pop("realm", "")
    if not realm.startswith(("https://", "http://")):
        return
    params.setdefault("scope", f"repository:{ref.repository}:pull")
    answer = session.get(
        realm,
        params=params,
        auth=(user, password) if user and password else None,
        timeout=spec.timeout,
        verify=spec.ca_file or True,
    )
    if answer.status_code != 200:
        return
    body = answer.json()
    token = body.get("token") or body.get("access_token")
    if token:
        secrets.register(token)
        session.headers["Authorization"] = f"Bearer {token}"
