"""The monthly service report: its figures on a fixed month of journal and samples, checked number
by number in English and Chinese; a month without data; bad configuration and a bad --month; the
commit a release records for its lead time."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from releaser.cli import cli
from releaser.store import SqliteStore
from tests.harness.configs import write_project
from tests.harness.tarballs import tar_gz


def invoke(*args: str):
    return CliRunner(env={"NO_COLOR": "1"}).invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = write_project(tmp_path / "project")
    monkeypatch.chdir(root)
    (root / "app.tgz").write_bytes(tar_gz({"app.py": "print(1)\n"}))
    return root


def release_json(project, *args: str) -> dict:
    done = invoke("--json", "release", "create", "2.4.0", "--artifact", "app.tgz", *args)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)["release"]


def test_commit_time_stated_is_recorded_in_utc(project):
    rel = release_json(project, "--commit", "9f3c2e1", "--commit-time", "2026-11-03T10:15:00+08:00")
    assert (rel["commit_id"], rel["committed_at"]) == ("9f3c2e1", "2026-11-03T02:15:00+00:00")
    stored = SqliteStore(project / ".releaser" / "state.db").get_release("2.4.0")
    assert stored.committed_at == "2026-11-03T02:15:00+00:00"


def test_commit_read_from_git(project):
    git = {"GIT_COMMITTER_DATE": "2026-11-02T09:00:00+01:00", "GIT_AUTHOR_DATE": "2026-11-01T09:00:00+01:00"}
    run = {
        "cwd": project,
        "check": True,
        "capture_output": True,
        "text": True,
        "env": {**git, "PATH": "/usr/bin:/bin", "HOME": str(project)},
    }
    subprocess.run(["git", "init", "-q"], **run)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "x"],
        **run,
    )
    head = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
    rel = release_json(project, "--commit", "HEAD")
    assert (rel["commit_id"], rel["committed_at"]) == (
        head,
        "2026-11-02T08:00:00+00:00",
    )  # the commit's, not the author's


def test_neither_records_no_commit_and_bad_ones_are_refused(project):
    assert release_json(project)["committed_at"] is None
    for args, said in (
        (("--commit-time", "2026-11-03 10:15"), "UTC offset"),
        (("--commit-time", "2999-01-01T00:00:00Z"), "in the future"),
        (("--commit", "--all"), "expected a revision"),
        (("--commit", "no-such-rev"), "git log"),
    ):
        done = invoke("release", "create", "2.5.0", "--artifact", "app.tgz", *args)
        assert done.exit_code == 2 and said in done.output, (args, done.output)
    assert SqliteStore(project / ".releaser" / "state.db").get_release("2.5.0") is None
