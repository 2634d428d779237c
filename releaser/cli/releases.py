"""Registering releases, and listing and showing them."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from ..errors import UsageError
from ..terminal import shown_time
from .app import App
from .base import cli, command, plain_option, unknown_release, validate_release_id
from .complete import complete_releases
from .looking import read_status


@cli.group()
def release() -> None:
    """Register, list and show releases."""


@command(
    release,
    "create",
    examples=(
        "releaser release create 2.4.0 --artifact app-2.4.0.tar.gz --notes NOTES.md --feature batch-order",
        "releaser release create 2.4.0 --artifact app.tar.gz --url https://artifacts.example.com/app-2.4.0.tar.gz",
        "releaser release create 2.4.0 --image registry.example.com/shop:2.4.0",
        "releaser release create 2.4.0 --artifact app.tar.gz --expand 0042 --contract 0043 --reversible expand",
        "releaser release create 2.4.0 --artifact app.tar.gz --commit HEAD   # lead time from the commit's time",
        "releaser release create 2.4.0 --artifact app.tar.gz --commit 9f3c2e1 --commit-time 2026-11-03T10:15:00+08:00",
    ),
)
@click.argument("version")
@click.option("--artifact", type=click.Path(dir_okay=False), help="The release tarball.")
@click.option("--image", help="A container image, REGISTRY/NAME:TAG; the tag's digest now is what the release is.")
@click.option("--notes", "notes_file", type=click.Path(dir_okay=False), help="A file with the release notes.")
@click.option("--feature", "features", multiple=True, help="A feature this release brings (repeatable).")
@click.option("--url", help="Where hosts fetch the artifact in pull mode (its sha256 is checked on the host).")
@click.option(
    "--expand",
    help="The schema version its expand step reaches, before its code runs (the previous release still works there).",
)
@click.option(
    "--contract",
    help="The schema version its contract step reaches, once its rollback windows have "
    "closed (the previous release may not work there).",
)
@click.option(
    "--reversible",
    "reversible",
    multiple=True,
    type=click.Choice(["expand", "contract"]),
    help="A step the playbook's `migrate.down` can undo (repeatable); others are irreversible.",
)
@click.option("--commit", "rev", help="The commit it was built from; its time is read with git (lead time).")
@click.option("--commit-time", help="That commit's time, ISO 8601 with its offset (no git asked).")
def release_create(
    app: App,
    version: str,
    artifact: str | None,
    image: str | None,
    notes_file: str | None,
    features: tuple[str, ...],
    url: str | None,
    expand: str | None,
    contract: str | None,
    reversible: tuple[str, ...],
    rev: str | None,
    commit_time: str | None,
) -> None:
    """Register VERSION with its artifact (sha256 and size recorded) or its image (the digest
    its tag names now), and the schema steps of its migration; a release is immutable."""
    from ..releases import check_artifact, commit_of, create_image_release, create_release, schema_change
    from ..yamlsrc import read_text

    validate_release_id(version)
    if (artifact is None) == (image is None):
        raise UsageError("give the release's --artifact FILE (a tarball) or its --image REGISTRY/NAME:TAG, one of them")
    if image is not None and url is not None:
        raise UsageError("--url names where hosts fetch a tarball; an image's hosts pull it from its registry")
    schema = schema_change(expand, contract, reversible)
    commit = commit_of(rev, commit_time, Path.cwd())
    notes = read_text(Path(notes_file), f"--notes {notes_file}") if notes_file else ""
    for feature in features:
        plain_option("--feature", feature)
    if url is not None:
        plain_option("--url", url)
    config = app.config()
    if image is not None:
        from ..images import parse_image, resolve

        plain_option("--image", image)
        ref = parse_image(image)
        resolved = resolve(ref, config.registry(ref.registry))  # before the store is opened
        rel, created = create_image_release(
            app.store(), app.journal(), version, ref, resolved, notes, features, schema, commit
        )
    elif artifact is not None:  # one of the two, checked above
        check_artifact(Path(artifact), url)  # before the store is opened: bad input writes nothing
        rel, created = create_release(
            app.store(), app.journal(), version, Path(artifact), notes, features, url, schema, commit
        )
    if not created:
        app.out.say(f"{version} is already registered with this {'image' if image else 'artifact'}; nothing changed")
    app.out.emit({"ok": True, "created": created, "release": asdict(rel)})


@command(release, "list", examples=("releaser release list", "releaser release list --json"))
def release_list(app: App) -> None:
    """Every registered release, newest first: its status, why it failed or was rolled back,
    and where it runs."""
    document = read_status(app)
    releases = list(reversed(document["releases"]))
    for rel in releases:
        where = ", ".join(rel["runs_on"]) or "-"
        app.out.result(
            f"{rel['version']:<16} {rel['status']:<12} runs on {where:<20} registered "
            f"{shown_time(rel['created_at'], app.out.tty)} by {rel['created_by']}"
        )
        if rel["reason"]:
            app.out.result(f"{'':<16} why: {app.out.told(rel['reason'])}")
    if not releases:
        app.out.result("no release is registered yet; `releaser release create VERSION --artifact FILE` registers one")
    app.out.emit({"ok": True, "releases": releases})


@command(release, "show", examples=("releaser release show 2.4.0",))
@click.argument("version", shell_complete=complete_releases)
def release_show(app: App, version: str) -> None:
    """One release: its artifact, notes and features, every stage it ran, where it runs, its report."""
    validate_release_id(version)
    document = read_status(app)
    rel = next((r for r in document["releases"] if r["version"] == version), None)
    if rel is None:
        raise UsageError(unknown_release(version))
    stored = app.store(read_only=True).get_release(version)
    if stored is None:  # the status document lists only what the store holds
        raise UsageError(unknown_release(version))
    report = next((r for r in document["reports"] if r["release"] == version), None)
    hosts = {
        env: [h for h, state in e["hosts"].items() if state["version"] == version]
        for env, e in document["environments"].items()
    }
    shown = {
        **rel,
        "artifact": stored.artifact,
        "size": stored.size,
        "url": stored.url,
        "image": stored.image,
        "notes": stored.notes,
        "hosts": {env: names for env, names in hosts.items() if names},
        "report": report,
    }
    app.out.result(f"{version}: {rel['status']}" + (f" — {rel['reason']}" if rel["reason"] else ""))
    if stored.image:
        app.out.result(f"  image     {stored.image} (from {stored.artifact}, {stored.size:,} bytes)")
    else:
        app.out.result(f"  artifact  {stored.artifact} ({stored.size:,} bytes, sha256 {stored.sha256})")
    app.out.result(f"  features  {', '.join(rel['features']) or '-'}")
    schema = rel.get("schema")
    if schema:
        steps = ", ".join(
            f"{phase} {schema[phase]}" + (" (reversible)" if phase in schema["reversible"] else " (irreversible)")
            for phase in ("expand", "contract")
            if schema[phase]
        )
        low, high = schema["runs_on"]
        app.out.result(
            f"  schema    {steps or 'no step of its own'}; runs on {low or 'an empty schema'}"
            + (f" to {high}" if high != low else "")
        )
    app.out.result(f"  by        {rel['created_by']}, {shown_time(rel['created_at'], app.out.tty)}")
    for stage in rel["stages"]:
        app.out.result(
            f"  {stage['stage']:<9} {stage['status']:<12} on {stage['environment']:<8} "
            f"{shown_time(stage['started_at'], app.out.tty)} -> {shown_time(stage['finished_at'], app.out.tty)}"
            + (f"  forced: {stage['reason']}" if stage["forced"] else "")
        )
    for env, names in shown["hosts"].items():
        app.out.result(f"  runs on   {env}: {len(names)} host(s) ({', '.join(names)})")
    if report:
        app.out.result(f"  report    {report['state']}" + (f", {report['path']}" if report["path"] else ""))
    for line in stored.notes.strip().splitlines():
        app.out.result(f"  | {line}")
    app.out.emit({"ok": True, "release": shown})
