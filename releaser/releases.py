"""Registering releases (a tarball, or an image by digest): id rules, artifact checksum and contents,
and the immutability of both."""

from __future__ import annotations

import hashlib
import posixpath
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .errors import UsageError
from .events import Event
from .images import ImageRef, Resolved
from .journal import Journal
from .model import RELEASE_ID, Release, SchemaChange, utcnow
from .processes import whoami
from .record import Record
from .store import Store


class Commit(Record, frozen=True):
    """The commit a release was built from: where its lead time for changes starts."""

    id: str | None  # the revision (a full hash when git was asked)
    at: str  # its commit time, UTC ISO 8601


def validate_release_id(version: str) -> str:
    if not RELEASE_ID.fullmatch(version or ""):
        raise UsageError(
            f"invalid release id {version!r}: use 1 to 64 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit"
        )
    return version


def schema_change(expand: str | None, contract: str | None, reversible: tuple[str, ...]) -> SchemaChange:
    """A release's schema steps from `release create`: versions as the migration tool prints them."""
    for option, version in (("--expand", expand), ("--contract", contract)):
        if version is not None and not RELEASE_ID.fullmatch(version):
            raise UsageError(
                f"{option} {version!r}: a schema version is what the migration tool's `current` prints: 1 to 64 "
                "letters, digits, '.', '_', '+' or '-', starting with a letter or digit"
            )
    if expand is not None and expand == contract:
        raise UsageError(f"--expand and --contract both name {expand}: a contract step goes past the expand step")
    for phase in reversible:
        if {"expand": expand, "contract": contract}[phase] is None:
            raise UsageError(f"--reversible {phase}: the release has no --{phase} step")
    return SchemaChange(expand, contract, tuple(sorted(set(reversible))))


def commit_of(rev: str | None, stated: str | None, cwd: Path) -> Commit | None:
    """`release create --commit REV` (its time read from git in `cwd`) and `--commit-time ISO8601`
    (stated; it wins, and no git is asked). Neither: None, and the release has no lead time."""
    if rev is not None and (not rev or rev.startswith("-") or any(ch.isspace() or ord(ch) < 32 for ch in rev)):
        raise UsageError(f"--commit {rev!r}: expected a revision such as a commit hash, a tag or HEAD")
    if stated is not None:
        return Commit(rev, _stated_time(stated))
    if rev is None:
        return None
    try:
        done = subprocess.run(
            ["git", "log", "-1", "--format=%H %cI", rev, "--"],  # noqa: S607 - git from PATH
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--commit {rev}: cannot run git ({exc}); give --commit-time ISO8601 instead") from None
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise UsageError(f"--commit {rev}: git log in {cwd} says: {said[0]}; give --commit-time ISO8601 instead")
    commit_id, _, when = done.stdout.strip().partition(" ")
    return Commit(commit_id, datetime.fromisoformat(when).astimezone(UTC).isoformat(timespec="seconds"))


def _stated_time(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise UsageError(
            f"--commit-time {text!r}: expected an ISO 8601 time with its UTC offset, such as 2026-11-03T10:15:00+08:00"
        )
    if moment > datetime.now(UTC) + timedelta(minutes=5):
        raise UsageError(f"--commit-time {text}: that is in the future")
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_artifact(artifact: Path, url: str | None = None) -> Path:
    """The artifact (and URL) a release would be registered with, checked before anything is
    written; its resolved path."""
    try:
        artifact = artifact.resolve()
        if not artifact.is_file():
            raise UsageError(f"artifact {artifact} does not exist or is not a file")
    except (OSError, RuntimeError) as exc:  # a symlink loop, a path too long
        raise UsageError(f"artifact {artifact}: {exc}") from None
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"--url must be an http:// or https:// URL, got {url!r}")
    inspect_artifact(artifact)
    return artifact


def inspect_artifact(path: Path) -> None:
    """Refuse an artifact that could write outside its release directory on a host: members
    with absolute paths or `..`, devices and FIFOs, and links that point outside the release."""
    import tarfile

    try:
        with tarfile.open(path) as archive:
            for member in archive:
                _refuse_escaping(path, member)
    except tarfile.TarError as exc:
        raise UsageError(f"artifact {path} is not a readable tar archive: {exc}") from None
    except OSError as exc:
        raise UsageError(f"artifact {path} cannot be read: {exc.strerror or exc}") from None


def _refuse_escaping(path: Path, member) -> None:
    name = member.name
    if name.startswith("/") or ".." in name.split("/"):
        raise UsageError(f"artifact {path}: member {name!r} would be written outside the release directory")
    if member.ischr() or member.isblk() or member.isfifo():
        raise UsageError(
            f"artifact {path}: member {name!r} is a device or FIFO; releases hold files, directories and links"
        )
    if member.issym() or member.islnk():
        target = member.linkname
        where = posixpath.normpath(posixpath.join(posixpath.dirname(name), target) if member.issym() else target)
        if target.startswith("/") or where == ".." or where.startswith("../"):
            raise UsageError(f"artifact {path}: link {name!r} -> {target!r} points outside the release directory")


def create_release(
    store: Store,
    journal: Journal,
    version: str,
    artifact: Path,
    notes: str = "",
    features: tuple[str, ...] = (),
    url: str | None = None,
    schema: SchemaChange | None = None,
    commit: Commit | None = None,
) -> tuple[Release, bool]:
    """Register a release; (release, created). The same id with the same artifact is a no-op;
    with a different artifact it is refused."""
    validate_release_id(version)
    artifact = check_artifact(artifact, url)
    _refuse_declared(store, version, schema)
    digest = sha256_file(artifact)
    release = Release(
        version=version,
        artifact=str(artifact),
        sha256=digest,
        size=artifact.stat().st_size,
        notes=notes,
        features=_features(features),
        created_at=utcnow(),
        created_by=whoami(),
        url=url,
        schema=schema or SchemaChange(),
        commit_id=commit.id if commit else None,
        committed_at=commit.at if commit else None,
    )
    return _register(store, journal, release, f"{release.size} bytes, sha256 {digest[:12]}" + _schema_words(release))


def create_image_release(
    store: Store,
    journal: Journal,
    version: str,
    image: ImageRef,
    resolved: Resolved,
    notes: str = "",
    features: tuple[str, ...] = (),
    schema: SchemaChange | None = None,
    commit: Commit | None = None,
) -> tuple[Release, bool]:
    """Register an image release: the digest the registry gave `image` (see images.resolve),
    pinned, so that a tag moved later changes nothing."""
    validate_release_id(version)
    _refuse_declared(store, version, schema)
    release = Release(
        version=version,
        artifact=str(image),
        sha256=resolved.digest.removeprefix("sha256:"),
        size=resolved.size,
        notes=notes,
        features=_features(features),
        created_at=utcnow(),
        created_by=whoami(),
        image=image.pinned(resolved.digest),
        schema=schema or SchemaChange(),
        commit_id=commit.id if commit else None,
        committed_at=commit.at if commit else None,
    )
    return _register(store, journal, release, f"image {release.image}" + _schema_words(release))


def _features(features: tuple[str, ...]) -> list[str]:
    for name in features:
        if not name or len(name) > 100 or any(ch in name for ch in "\n\r\t"):
            raise UsageError(f"invalid feature name {name!r}")
    return list(dict.fromkeys(features))


def _register(store: Store, journal: Journal, release: Release, what: str) -> tuple[Release, bool]:
    """Store a new release and journal it; (release, created). Releases are immutable: the same
    id with the same content is a no-op, with other content it is refused."""
    existing = store.get_release(release.version)
    if existing is not None:
        if existing.schema != release.schema:
            raise UsageError(
                f"release {release.version} already exists with other schema steps ({_steps(existing.schema)}; "
                f"these {_steps(release.schema)}); releases are immutable: use a new id"
            )
        if (existing.sha256, existing.image) != (release.sha256, release.image):
            theirs = existing.image or f"sha256 {existing.sha256[:12]}…"
            ours = release.image or f"sha256 {release.sha256[:12]}…"
            raise UsageError(
                f"release {release.version} already exists with other content ({theirs}; this one {ours}); "
                "releases are immutable: use a new id"
            )
        return existing, False
    with store.transaction():
        store.add_release(release)
        journal.record(
            Event.RELEASE_CREATED,
            f"registered {release.version} ({what})",
            release=release.version,
            data={
                "artifact": release.artifact,
                "sha256": release.sha256,
                "image": release.image,
                "features": release.features,
                "schema": release.schema.to_dict(),
                "commit": release.commit_id,
                "committed_at": release.committed_at,
            },
        )
    return release, True


def _refuse_declared(store: Store, version: str, schema: SchemaChange | None) -> None:
    """The schema's history only goes forward: a step's version is one no other release declared
    (a version declared twice would make every release's range, and every rollback's plan, wrong)."""
    if not schema:
        return
    for other in store.list_releases():
        if other.version == version:
            continue
        for phase in ("expand", "contract"):
            mine = getattr(schema, phase)
            for theirs in ("expand", "contract"):
                if mine is not None and mine == getattr(other.schema, theirs):
                    raise UsageError(
                        f"--{phase} {mine}: {other.version} already declares {mine} (its {theirs} step); each "
                        "release's steps name new versions, after every version registered before (the schema's "
                        "history only goes forward); nothing was registered"
                    )


def _schema_words(release: Release) -> str:
    return f"; schema steps: {_steps(release.schema)}" if release.schema else ""


def _steps(schema: SchemaChange) -> str:
    return f"expand {schema.expand or '-'}, contract {schema.contract or '-'}"


def verify_artifact(release: Release) -> None:
    """The artifact must still be the file that was registered (an image is its digest)."""
    if release.image:
        return
    path = Path(release.artifact)
    if not path.is_file():
        raise UsageError(f"the artifact of {release.version} is gone: {path}")
    if sha256_file(path) != release.sha256:
        raise UsageError(f"the artifact of {release.version} changed since it was registered: {path}")
