"""Property-based fuzzing of configuration and command lines (cases: tests/harness/fuzzcases.py).

Every case must end in a documented exit code without a traceback. A bad configuration ends in
exit 2 with every problem as `file:line: ...`, a line inside the file at fault. A command that
exits 2 leaves the project directory (configuration and state) byte-identical.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.harness.fuzzcases import (
    EXAMPLES,
    FUZZ,
    GOOD,
    command_line,
    config_case,
    config_problems_without_place,
    invoke,
    make_cli_project,
    run_command_case,
    run_config_case,
    write_files,
)

CONFIG_CASES = int(os.environ.get("RELEASER_FUZZ_CONFIG_CASES", "450"))
CLI_CASES = int(os.environ.get("RELEASER_FUZZ_CLI_CASES", "500"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(FUZZ, max_examples=CONFIG_CASES)
@given(case=config_case())
def test_any_configuration_is_refused_with_file_and_line_or_accepted(workdir, case):
    outcome, detail = run_config_case(workdir / "config", case)
    assert outcome in GOOD, f"{outcome}: {detail}"


@pytest.fixture(scope="module")
def cli_project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("cli")
    return root, make_cli_project(root)


@settings(FUZZ, max_examples=CLI_CASES)
@given(data=st.data())
def test_any_command_line_ends_with_its_exit_code_and_exit_2_changes_nothing(cli_project, data):
    root, paths = cli_project
    outcome, detail = run_command_case(root, paths, data.draw(command_line(paths)))
    assert outcome in GOOD, f"{outcome}: {detail}"


# -- the cases the fuzzing first found, kept as named regressions ---------------------------

THRESHOLD = (
    "checks:\n  - name: errors\n    type: threshold\n"
    "    metric: 'demo_http_requests_total{code=~\"5..\"}'\n    max: 1\n"
)
KNOWN = [  # (file, text replaced, replacement, what the message says)
    ("environments.yaml", "root: hosts/{host}", "root: hosts/{host.x}", "only {host} may be used"),
    ("environments.yaml", "root: hosts/{host}", "root: hosts/{host:>900000000}", "only {host} may be used"),
    ("healthchecks/limits.yaml", "max: 1", "max: .nan", "expected a finite number"),
    (
        "environments.yaml",
        "report_to: [account-manager@example.com]",
        'report_to: ["a@example.com\\r\\nBcc: x@example.org"]',
        "expected an e-mail address",
    ),
    ("environments.yaml", "bake: 1m", "bake: 99999999999999999999d", "at most 366d"),
    ("environments.yaml", "bake: 1m", "bake: 2020-02-30", "expected a duration"),
    ("environments.yaml", "bake: 1m", "bake: !!int abc", "int value 'abc' is invalid"),
    ("environments.yaml", "bake: 1m", "bake: !!bool maybe", "bool value 'maybe' is invalid"),
    ("environments.yaml", "bake: 1m", "bakes: 1m", "did you mean `bake`?"),
    ("environments.yaml", "    bake: 1m", "    ? [a, b]\n    : 1m", "a key must be plain text"),
    ("environments.yaml", "bake: 1m", "bake: " + "[" * 100 + "]" * 100, "nested deeper than"),
    (
        "environments.yaml",
        "project: shop",
        "project: shop\n"
        + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'x'] * 10)}]\n" for i in range(6)),
        "expands to more than",
    ),
    ("environments.yaml", "project: shop", "project: sh\x00op", "contains a NUL character"),
    ("environments.yaml", "project: shop", "project: sh\udcffop", "not UTF-8 text"),
    (
        "environments.yaml",
        'scrape_url: "http://{address}:{PORT}/metrics"',
        'scrape_url: "ftp://{address}/"',
        "expected an http:// or https:// URL",
    ),
    (
        "environments.yaml",
        'scrape_url: "http://{address}:{PORT}/metrics"',
        'scrape_url: "http://{nope}/"',
        "unknown placeholder {nope}",
    ),
    ("environments.yaml", "        address: 127.0.0.1", '        address: "127.0.0.1\\r\\nx"', "control character"),
    ("environments.yaml", "  - name: dev-1", "  - name: ..", "a host name is"),
    ("environments.yaml", "  path: .releaser/state.db", "  path: playbooks", "expected the path of a database file"),
    (
        "environments.yaml",
        "pipeline:\n  - stage: selftest",
        "pipeline: []\nx:\n  - stage: selftest",
        "at least one stage",
    ),
    (
        "environments.yaml",
        "      timeout: 5s",
        '      timeout: 5s\n      bearer_env: "$(id)"',
        "name of an environment variable",
    ),
    (
        "environments.yaml",
        "playbook: demo-app",
        "playbook: " + "9" * 400,
        "a playbook name is",
    ),  # a name too long for a path
    ("environments.yaml", "checks: [demo]", "checks: [../../etc/passwd]", "a check set name is"),
]


def _known_base() -> dict[str, str]:
    files = {**EXAMPLES, "healthchecks/limits.yaml": THRESHOLD}
    files["environments.yaml"] = files["environments.yaml"].replace(
        "checks: [demo]\n    bake: 1h", "checks: [demo, limits]\n    bake: 1h"
    )
    return files


def test_the_known_cases_start_from_a_valid_configuration(workdir):
    write_files(workdir / "base", _known_base())
    result = invoke(["-c", str(workdir / "base" / "environments.yaml"), "validate"])
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("file, old, new, message", KNOWN, ids=[f"{c[0]}:{c[2][:30]}" for c in KNOWN])
def test_known_hostile_configurations_end_in_file_line_key_message(workdir, file, old, new, message):
    files = _known_base()
    assert old in files[file], old
    text = files[file].replace(old, new, 1)
    case = {**files, file: text.encode("utf-8", "surrogateescape")}
    project = workdir / "known"
    write_files(project, case)
    result = invoke(["-c", str(project / "environments.yaml"), "validate"])
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert config_problems_without_place(project, result.stderr) == []
    assert not (project / ".releaser").exists()
