"""Hostile values in configuration: nothing they hold is ever executed, and names that would
reach shells, paths and terminals raw are refused at validation."""

from __future__ import annotations

import pytest

# Every way a shell could be talked into running something, in one value.
PAYLOAD = "8080$(touch {dir}/PWNED1)`touch {dir}/PWNED2`;touch {dir}/PWNED3 && touch {dir}/PWNED4 #'\""

# A command check that names every placeholder and writes what it was given, byte for byte.
PROBE_CHECKS = """\
checks:
  - name: probe
    type: command
    command: "printf '%s|%s|%s|%s' {name} {address} {root} {PROBE} > {root}/shared/probe-seen"
"""


@pytest.fixture(params=["local", pytest.param("ssh", marks=pytest.mark.sshd)])
def hostile_project(request, project):
    fleet = None
    if request.param == "ssh":
        fleet = request.getfixturevalue("ssh_fleet")
        fleet.heal()  # a previous test may have stopped or rekeyed a server
    project.write_config(ssh=fleet, checks="probe")
    payload = PAYLOAD.format(dir=project.dir)
    config = project.dir / "environments.yaml"
    quoted = payload.replace("\\", "\\\\").replace('"', '\\"')
    config.write_text(config.read_text().replace('RESTART_DELAY: ""', f'RESTART_DELAY: "", PROBE: "{quoted}"'))
    (project.dir / "healthchecks" / "probe.yaml").write_text(PROBE_CHECKS)
    return project, payload


def test_every_placeholder_of_a_command_check_is_one_quoted_word(hostile_project):
    project, payload = hostile_project
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)  # selftest, on dev-1, runs the probe
    assert not list(project.dir.rglob("PWNED*"))
    host = "dev-1"
    seen = (project.dir / "hosts" / host / "shared" / "probe-seen").read_text()
    name, address, root, probe = seen.split("|", 3)
    assert name == host and root == str(project.dir / "hosts" / host) and address
    assert probe == payload


@pytest.mark.parametrize("name", ["d;touch${IFS}PWNED;", "..", ".", "-rf", "a b", "web\x1b[31m", "x" * 64, ""])
def test_unsafe_host_and_environment_names_are_refused(project, name):
    config = project.dir / "environments.yaml"
    text = config.read_text()
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\x1b", "\\e")
    config.write_text(text.replace("hosts: [dev-1]", f'hosts: ["{escaped}"]', 1))
    refused = project.cli("validate")
    assert refused.returncode == 2, refused.stderr
    assert "environments.yaml:" in refused.stderr and "Traceback" not in refused.stderr
    assert "a host name is 1 to 63 letters" in refused.stderr or "control character" in refused.stderr
    assert "\x1b" not in refused.stderr  # shown escaped, never raw on the terminal
    config.write_text(text.replace("\n  dev:\n", f'\n  "{escaped}":\n', 1))
    refused = project.cli("validate")
    assert refused.returncode == 2 and "an environment name is" in refused.stderr, refused.stderr
    assert not (project.dir / ".releaser").exists()


def _tarball(path, members) -> None:
    """members: (name, kind, data-or-link) with kind file, symlink, hardlink, fifo, chr."""
    import io
    import tarfile

    kinds = {
        "file": tarfile.REGTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "fifo": tarfile.FIFOTYPE,
        "chr": tarfile.CHRTYPE,
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            info.type = kinds[kind]
            if kind == "file":
                info.size = len(value.encode())
                tar.addfile(info, io.BytesIO(value.encode()))
            else:
                info.linkname = value
                tar.addfile(info)


@pytest.mark.parametrize(
    "member, why",
    [
        (("../escape.txt", "file", "x"), "outside the release directory"),
        (("/etc/escape.txt", "file", "x"), "outside the release directory"),
        (("a/../../escape.txt", "file", "x"), "outside the release directory"),
        (("REVISION", "symlink", "/tmp/victim"), "points outside"),
        ((".complete", "symlink", "../../shared/x"), "points outside"),
        (("sub/link", "symlink", "../../x"), "points outside"),
        (("hard", "hardlink", "../x"), "points outside"),
        (("pipe", "fifo", ""), "device or FIFO"),
        (("tty", "chr", ""), "device or FIFO"),
    ],
)
def test_a_hostile_artifact_is_refused_before_anything_is_written(project, member, why):
    artifact = project.dir / "hostile.tar.gz"
    _tarball(artifact, [("app.txt", "file", "app\n"), member])
    refused = project.cli("release", "create", "6.6.6", "--artifact", str(artifact))
    assert refused.returncode == 2, refused.stderr
    assert repr(member[0]) in refused.stderr and why in refused.stderr and "Traceback" not in refused.stderr
    assert not (project.dir / ".releaser").exists()  # no state database was created


def test_links_inside_the_release_never_lead_releasers_own_files_astray(project):
    """REVISION and .complete shipped as links to files of the release: prepare writes its own
    files in their place and never through them, and a linked .complete is not a prepared release."""
    artifact = project.dir / "linked.tar.gz"
    _tarball(
        artifact,
        [("app.txt", "file", "app 1.0.0\n"), ("REVISION", "symlink", "app.txt"), (".complete", "symlink", "app.txt")],
    )
    project.cli("release", "create", "1.0.0", "--artifact", str(artifact), check=True)
    project.cli("promote", "1.0.0", check=True)
    release = project.dir / "hosts" / "dev-1" / "releases" / "1.0.0"
    assert (release / "app.txt").read_text() == "app 1.0.0\n"
    assert not (release / "REVISION").is_symlink() and (release / "REVISION").read_text() == "1.0.0\n"
    assert not (release / ".complete").is_symlink()


def test_hooks_get_a_minimal_environment_never_releasers_secrets(project, monkeypatch):
    from tests.harness.project import PLAYBOOK

    monkeypatch.setenv("RELEASER_TEST_SMTP_PASSWORD", "s3cret-smtp")
    monkeypatch.setenv("APP_CONFIG_DIR", "/etc/app")
    playbook = project.dir / "playbooks" / "app.yaml"
    playbook.write_text(
        PLAYBOOK.replace("  restart: |\n", '  restart: |\n    env > "$RELEASER_ROOT/shared/hook-env"\n')
    )
    config = project.dir / "environments.yaml"
    config.write_text(config.read_text().replace("  dev:\n", "  dev:\n    pass_env: [APP_CONFIG_DIR]\n", 1))
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    seen = dict(
        line.split("=", 1)
        for line in (project.dir / "hosts" / "dev-1" / "shared" / "hook-env").read_text().splitlines()
        if "=" in line
    )
    assert "s3cret-smtp" not in str(seen) and "RELEASER_TEST_SMTP_PASSWORD" not in seen
    assert seen["APP_CONFIG_DIR"] == "/etc/app" and seen["RELEASER_RELEASE"] == "1.0.0" and "PATH" in seen
