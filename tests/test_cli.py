"""CLI conventions: results on stdout and progress on stderr, global options before or after the
command, and light commands that import only what they use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from releaser.cli import cli
from tests.harness.configs import write_project

HEAVY = ("matplotlib", "numpy", "jinja2", "paramiko", "fabric", "requests", "psycopg")
# What only promotions need: reading state and configuration must not pay for them.
RUNTIME = (
    "releaser.pipeline",
    "releaser.journal",
    "releaser.locks",
    "releaser.transport",
    "releaser.playbook",
    "releaser.notify",
    "releaser.decisions",
    "releaser.freezes",
    "releaser.alerts",
    "email",
    "socket",
)


def invoke(*args: str):
    return CliRunner(env={"NO_COLOR": "1"}).invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = write_project(tmp_path / "project")
    monkeypatch.chdir(tmp_path)  # -C moves into the project; the test's own directory is restored after
    return root


def test_results_go_to_stdout_and_progress_to_stderr(project):
    checked = invoke("-C", str(project), "validate")
    assert checked.exit_code == 0
    assert "environments.yaml: ok" in checked.stdout and "ok" not in checked.stderr
    status = invoke("-C", str(project), "status")
    assert status.exit_code == 0
    assert "prod:" in status.stdout and "web-1" in status.stdout
    assert "note: there is no state database" in status.stderr  # a remark, not the answer
    quiet = invoke("-C", str(project), "status", "--quiet")
    assert "prod:" in quiet.stdout and quiet.stderr == ""


@pytest.mark.parametrize("position", ["before", "after"])
def test_global_options_before_or_after_the_command(project, position):
    options = ["-C", str(project), "--json", "--no-color"]
    args = [*options, "validate"] if position == "before" else ["validate", *options]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)  # --json holds stdout for its one document
    assert document["ok"] is True and document["pipeline"][0]["stage"] == "selftest"
    assert "environments.yaml: ok" in result.stderr


def test_errors_show_even_when_quiet(project):
    (project / "environments.yaml").write_text("project: [")
    result = invoke("validate", "-q", "-C", str(project))
    assert result.exit_code == 2 and "configuration error" in result.stderr and result.stdout == ""


def test_version_short_and_long():
    assert invoke("-V").stdout.startswith("releaser, version ")
    assert invoke("--version").stdout == invoke("-V").stdout


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["status"], ["history"], ["validate"]])
def test_light_commands_import_only_what_they_use(project, args):
    """A fresh interpreter runs the command and lists the heavy libraries and runtime modules it loaded."""
    probe = (
        "import sys\nfrom releaser.cli import cli\n"
        f"try:\n    cli({['-C', str(project), *args]!r})\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}"
        f" | set(sys.modules) & {set(RUNTIME)!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []", proc.stdout


def test_each_command_is_where_the_group_looks_for_it():
    """`releaser X` imports only X's module (cli.base.Commands): the map must name every command's."""
    import importlib
    import pkgutil

    import releaser.cli
    from releaser.cli.base import Commands, cli

    for module in pkgutil.iter_modules(releaser.cli.__path__):
        if module.name != "__main__":
            importlib.import_module(f"releaser.cli.{module.name}")
    assert set(cli.commands) == set(Commands.MODULES)
    where = {name: command.callback.__module__ for name, command in cli.commands.items()}
    assert where == {name: f"releaser.cli.{module}" for name, module in Commands.MODULES.items()}
