"""Property-based fuzzing of configuration and command lines (in-process, through click's CliRunner).

Every case must end in a documented exit code without a traceback. A bad configuration ends in
exit 2 with every problem as `file:line: ...`, a line inside the file at fault. A command that
exits 2 leaves the project directory (configuration and state) byte-identical. Cases come from
mutating the scaffolded and the shipped example configurations: YAML-level junk, hostile values
at every path, near-miss keys; and from a grammar of hostile command lines.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from releaser.cli import cli
from releaser.scaffold import FILES as SCAFFOLD
from tests.tarballs import tar_gz

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "environments.yaml": (REPO / "environments.example.yaml").read_text(),
    **{f"{d}/{p.name}": p.read_text() for d in ("playbooks", "healthchecks") for p in sorted((REPO / d).glob("*.yaml"))},
}
BASES = {"scaffold": dict(SCAFFOLD), "example": EXAMPLES}
CONFIG_CASES = int(os.environ.get("RELEASER_FUZZ_CONFIG_CASES", "700"))
CLI_CASES = int(os.environ.get("RELEASER_FUZZ_CLI_CASES", "400"))
FUZZ = settings(deadline=None, database=None, derandomize=os.environ.get("RELEASER_FUZZ_RANDOM") is None,
                suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                phases=[Phase.explicit, Phase.generate, Phase.shrink])

SNIPPETS = [
    "\x00", "\t", ": ", "- ", "&a ", "*a", "*undefined ", "!!int x ", "!!bool maybe ", "!!float .x ",
    "!!python/object/apply:os.system ['touch PWNED'] ", "!!binary x ", "!!timestamp 2020-02-30 ", "{", "[", "]", "}",
    '"', "'", "\r\n", "\r", "%YAML 1.1\n", "---\n", "...\n", "? ", "<<: *a\n", "\ufeff", "\x85", "\u2028", "@", "`",
    "|", ">", "#", "[" * 120, "x: &a [1,2,3]\ny: [*a,*a,*a]\n", "\x1b[31m", "{host.x}", "{host:>900000000}",
    "l0: &l0 [a,a,a,a,a,a,a,a,a,a]\nl1: &l1 [*l0,*l0,*l0,*l0,*l0,*l0,*l0,*l0,*l0,*l0]\n"
    "l2: &l2 [*l1,*l1,*l1,*l1,*l1,*l1,*l1,*l1,*l1,*l1]\nl3: [*l2,*l2,*l2,*l2,*l2,*l2,*l2,*l2,*l2,*l2]\n",
    "a: &r [*r]\n", "? [a, b]\n: c\n", "2020-02-30", "99999999999999999999d", ".nan", "-.inf", "0x1F", "0o17",
    "1_000", "~", "null", "yes", "on", "=", "<<", "\\", "\\x", "\\u0000",
]
HOSTILE_VALUES = [
    None, "", " ", 0, -1, 1.5, 10**30, math.nan, math.inf, -math.inf, True, False, [], {}, [[]], {"x": 1}, [None],
    "x" * 5000, "99999999999999999999d", "0s", "-5s", "1e3s", "5", "1h30", "a\r\nBcc: evil@example.org",
    "\x1b[31mred", "\x07", "{host.x}", "{host:>900000000}", "{0}", "{name!r}", "{}", "$(touch PWNED)", "`id`",
    "; rm -rf /", "../../etc/passwd", "/", ".", "..", "2020-02-30", "http://u:p@[::1", "ftp://example.org/", "100%",
    "0%", "101%", "-10%", "nan%", ".nan", "9" * 400, "ünïcødé", "名前", "a" * 64, "-rf", "a b", "%", "{{", "}}",
]
NAME_TYPO = st.sampled_from(["", "s", "_", "-", "x"])


def _tree(directory: Path) -> dict[str, bytes | None]:
    """Every path below `directory` with its bytes (None for directories and links)."""
    found: dict[str, bytes | None] = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = Path(root, name)
            rel = str(path.relative_to(directory))
            found[rel] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return found


def _write(directory: Path, files: dict[str, str | bytes]) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _invoke(args: list[str]):
    result = CliRunner(env={"NO_COLOR": "1"}).invoke(cli, args, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        trace = "".join(traceback.format_exception(result.exception))
        raise AssertionError(f"releaser {args!r} crashed:\n{trace}\nstderr:\n{result.stderr}")
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.exit_code in (0, 1, 2, 3, 4, 5), (args, result.exit_code, result.stderr)
    return result


PROBLEM_LINE = re.compile(r"^  (?P<file>[^\s:][^:]*):(?P<line>\d+): ")


def _assert_config_problems(directory: Path, stderr: str) -> None:
    """Each problem names a file of the configuration and a line inside it."""
    lines = [line for line in stderr.splitlines() if line.startswith("  ")]
    assert lines, stderr
    for line in lines:
        match = PROBLEM_LINE.match(line)
        assert match, f"a problem without file:line: {line!r}\n{stderr}"
        path = Path(match["file"]) if os.path.isabs(match["file"]) else directory / match["file"]
        assert path.is_file(), (line, stderr)
        assert 1 <= int(match["line"]) <= path.read_bytes().count(b"\n") + 1, line


# -- configuration mutations ----------------------------------------------------------------


@st.composite
def text_mutation(draw, files: dict[str, str]) -> dict[str, str | bytes]:
    """YAML-level junk in one file: a snippet inserted, lines deleted or repeated, bytes that are not UTF-8."""
    name = draw(st.sampled_from(sorted(files)))
    text = files[name]
    kind = draw(st.sampled_from(["insert", "replace_line", "delete", "duplicate", "bytes", "truncate"]))
    pos = draw(st.integers(0, len(text)))
    lines = text.splitlines(keepends=True)
    index = draw(st.integers(0, max(0, len(lines) - 1)))
    mutated: str | bytes
    if kind == "insert":
        mutated = text[:pos] + draw(st.sampled_from(SNIPPETS)) + text[pos:]
    elif kind == "replace_line":
        indent = re.match(r"\s*", lines[index]).group()
        lines[index] = indent + draw(st.sampled_from(SNIPPETS)) + "\n"
        mutated = "".join(lines)
    elif kind == "delete":
        count = draw(st.integers(1, 4))
        mutated = "".join(lines[:index] + lines[index + count:])
    elif kind == "duplicate":
        mutated = "".join(lines[: index + 1] + lines[index:])
    elif kind == "bytes":
        raw = text.encode()
        mutated = raw[:pos] + draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80"])) + raw[pos:]
    else:
        mutated = text[:pos]
    return {**files, name: mutated}


def _paths(value, prefix=()):
    """Every path (tuple of keys and indexes) into a loaded YAML value."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, prefix + (i,))


@st.composite
def value_mutation(draw, files: dict[str, str]) -> dict[str, str]:
    """A hostile value at any path of one file, a key removed, or a near-miss key added."""
    name = draw(st.sampled_from(sorted(files)))
    try:
        data = yaml.safe_load(files[name])
    except yaml.YAMLError:  # an earlier mutation broke the file already
        return files
    paths = [p for p in _paths(data) if p]
    if not paths:
        return files
    path = draw(st.sampled_from(paths))
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    kind = draw(st.sampled_from(["value", "value", "value", "delete", "typo", "unknown"]))
    if kind == "value":
        parent[last] = draw(st.sampled_from(HOSTILE_VALUES))
    elif kind == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        key = str(last)
        cut = draw(st.integers(0, len(key)))
        new_key = key[:cut] + draw(NAME_TYPO) + key[cut + 1:] if kind == "typo" else draw(st.sampled_from(
            ["colour", "bakes", "hosts ", "x-extra", "", "__class__"]))
        parent[new_key] = parent.pop(last)
    return {**files, name: yaml.safe_dump(data, allow_unicode=True, sort_keys=False)}


@st.composite
def config_case(draw) -> dict[str, str | bytes]:
    files = BASES[draw(st.sampled_from(sorted(BASES)))]
    strategy = draw(st.sampled_from([text_mutation, value_mutation]))
    mutated = draw(strategy(files))
    if draw(st.booleans()):  # a second mutation on top of the first
        files_str = {k: v for k, v in mutated.items() if isinstance(v, str)}
        if len(files_str) == len(mutated):
            mutated = draw(value_mutation(files_str))
    return mutated


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(FUZZ, max_examples=CONFIG_CASES)
@given(case=config_case())
def test_any_configuration_is_refused_with_file_and_line_or_accepted(workdir, case):
    project = workdir / "config"
    _write(project, case)
    before = _tree(project)
    config = str(project / "environments.yaml")
    result = _invoke(["-c", config, "validate"])
    assert _tree(project) == before
    if result.exit_code == 2:
        _assert_config_problems(project, result.stderr)
        return
    assert result.exit_code == 0, result.stderr
    # Accepted: the commands that read it run without a crash, and write nothing.
    for args in (["status", "--json"], ["history"], ["watch", "--once"], ["resume"], ["report", "due"]):
        assert _invoke(["-c", config, *args]).exit_code == 0, args
        assert _tree(project) == before, args


# -- command lines --------------------------------------------------------------------------


HOSTILE_WORDS = ["", " ", "-", "--", "..", "/", "x" * 300, "\x1b[2J", "a\nb", "$(touch PWNED)", "1.0.0;id",
                 "99999999999999999999999", "-1", "0", "nan", "名前", "prod", "dev", "due", "1.0.0", "9.9.9",
                 "../1.0.0", "v1", "%s", "{}", "--json"]


@st.composite
def command_line(draw, paths: dict[str, str]) -> list[str]:
    word = st.sampled_from(HOSTILE_WORDS)
    unregistered = st.sampled_from([w for w in HOSTILE_WORDS if w != "1.0.0"])  # promoting 1.0.0 would deploy and bake
    path = st.sampled_from(sorted(paths.values()))
    bad_duration = st.sampled_from(["0s", "0", "-1s", "1ms", "999999999999999999999999d", "1x", "", "367d", "2d"])
    duration = st.one_of(bad_duration, st.just("30s"))
    commands = [
        lambda: ["validate", draw(word)],
        lambda: ["init", draw(path)],
        lambda: ["release", "create", draw(word), "--artifact", draw(path)],
        lambda: ["release", "create", "2.0.0", "--artifact", paths["artifact"], "--notes", draw(path)],
        lambda: ["release", "create", "2.0.0", "--artifact", paths["artifact"], "--feature", draw(word)],
        lambda: ["release", "create", "2.0.0", "--artifact", paths["artifact"], "--url", draw(word)],
        lambda: ["release", "create", "2.0.0", "--artifact", draw(path), "--url", "ftp://x/"],
        lambda: ["promote", draw(unregistered)],
        lambda: ["promote", draw(unregistered), "--to", draw(word)],
        lambda: ["promote", "1.0.0", "--force"],
        lambda: ["run", draw(unregistered), "--to", draw(st.sampled_from(["gray", "nope", ""]))],
        lambda: ["rollback", draw(word), "--reason", draw(word)],
        lambda: ["rollback", "prod", "--reason", draw(word)],
        lambda: ["rollback", "prod", "--to", draw(word), "--reason", "why"],
        lambda: ["rollback", "prod"],
        lambda: ["unlock", draw(word)],
        lambda: ["unlock", draw(word), "--force", "--reason", ""],
        lambda: ["watch", "--interval", draw(bad_duration)],  # a valid one would watch forever
        lambda: ["watch", "--once", "--interval", draw(duration)],
        lambda: ["history", "--limit", draw(word)],
        lambda: ["history", "--release", draw(word), "--env", draw(word)],
        lambda: ["report", draw(word)],
        lambda: ["report", draw(word), "--out", draw(path)],
        lambda: ["report", "1.0.0", "--format", draw(word)],
        lambda: ["report", "1.0.0", "--force"],
        lambda: ["report", "due", "--out", draw(path)],
        lambda: ["report", "1.0.0", "--send", "--out", draw(path)],
        lambda: ["status", draw(word)],
        lambda: [draw(word)],
        lambda: ["-c", draw(path), draw(st.sampled_from(["validate", "status", "history", "resume"]))],
        lambda: ["-C", draw(path), "validate"],
    ]
    argv = draw(st.sampled_from(commands))()
    if draw(st.booleans()):
        argv.append("--json")
    return argv


@pytest.fixture(scope="module")
def cli_project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A scaffolded project with one release registered, and hostile paths beside it."""
    root = tmp_path_factory.mktemp("cli")
    project = root / "project"
    _write(project, SCAFFOLD)
    artifact = root / "app.tar.gz"
    artifact.write_bytes(tar_gz({"app.txt": "hi\n"}))
    config = str(project / "environments.yaml")
    assert _invoke(["-c", config, "release", "create", "1.0.0", "--artifact", str(artifact)]).exit_code == 0
    (root / "loop").symlink_to(root / "loop")
    (root / "dangling").symlink_to(root / "nowhere" / "x")
    (root / "file").write_text("a file\n")
    (root / "dir").mkdir()
    (root / "fifo").exists() or os.mkfifo(root / "fifo")
    (root / "bad.yaml").write_bytes(b"project: \xff\n")
    paths = {"artifact": str(artifact), "config": config, "missing": str(root / "missing" / "x"),
             "loop": str(root / "loop"), "dangling": str(root / "dangling"), "file": str(root / "file"),
             "dir": str(root / "dir"), "fifo": str(root / "fifo"), "bad": str(root / "bad.yaml"),
             "zero": "/dev/zero", "full": "/dev/full", "null": "/dev/null", "state": str(project / ".releaser")}
    return root, paths


@settings(FUZZ, max_examples=CLI_CASES)
@given(data=st.data())
def test_any_command_line_ends_with_its_exit_code_and_exit_2_changes_nothing(cli_project, data):
    root, paths = cli_project
    argv = data.draw(command_line(paths))
    if argv[0] not in ("-c", "-C"):
        argv = ["-c", paths["config"], *argv]
    before = _tree(root)
    cwd = os.getcwd()
    try:
        result = _invoke(argv)
    finally:
        os.chdir(cwd)  # -C changes the directory of this process
    if result.exit_code == 2:
        assert _tree(root) == before, (argv, result.stderr)
        assert result.stderr.strip(), argv
    assert not list(root.rglob("PWNED*"))
    assert "\x1b[2J" not in result.stderr and "\x1b[2J" not in result.stdout  # escaped on the terminal
    _restore(root, before)


def _restore(root: Path, before: dict[str, bytes | None]) -> None:
    """Undo what a successful command wrote (a fresh `init`, a release), so cases stay independent."""
    after = _tree(root)
    for rel in sorted(set(after) - set(before), key=len, reverse=True):
        path = root / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    for rel, content in before.items():
        if content is not None and after.get(rel) != content:
            (root / rel).write_bytes(content)


# -- the cases the fuzzing first found, kept as named regressions ---------------------------

THRESHOLD = "checks:\n  - name: errors\n    type: threshold\n    metric: 'demo_http_requests_total{code=~\"5..\"}'\n    max: 1\n"
KNOWN = [  # (file, text replaced, replacement, what the message says)
    ("environments.yaml", "root: hosts/{host}", "root: hosts/{host.x}", "only {host} may be used"),
    ("environments.yaml", "root: hosts/{host}", "root: hosts/{host:>900000000}", "only {host} may be used"),
    ("healthchecks/limits.yaml", "max: 1", "max: .nan", "expected a finite number"),
    ("environments.yaml", "report_to: [account-manager@example.com]", 'report_to: ["a@example.com\\r\\nBcc: x@example.org"]',
     "expected an e-mail address"),
    ("environments.yaml", "bake: 1m", "bake: 99999999999999999999d", "at most 366d"),
    ("environments.yaml", "bake: 1m", "bake: 2020-02-30", "expected a duration"),
    ("environments.yaml", "bake: 1m", "bake: !!int abc", "int value 'abc' is invalid"),
    ("environments.yaml", "bake: 1m", "bake: !!bool maybe", "bool value 'maybe' is invalid"),
    ("environments.yaml", "bake: 1m", "bakes: 1m", "did you mean `bake`?"),
    ("environments.yaml", "    bake: 1m", "    ? [a, b]\n    : 1m", "a key must be plain text"),
    ("environments.yaml", "bake: 1m", "bake: " + "[" * 100 + "]" * 100, "nested deeper than"),
    ("environments.yaml", "project: shop", "project: shop\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'x'] * 10)}]\n" for i in range(6)), "expands to more than"),
    ("environments.yaml", "project: shop", "project: sh\x00op", "contains a NUL character"),
    ("environments.yaml", "project: shop", "project: sh\udcffop", "not UTF-8 text"),
    ("environments.yaml", "scrape_url: \"http://{address}:{PORT}/metrics\"", "scrape_url: \"ftp://{address}/\"",
     "expected an http:// or https:// URL"),
    ("environments.yaml", "scrape_url: \"http://{address}:{PORT}/metrics\"", "scrape_url: \"http://{nope}/\"",
     "unknown placeholder {nope}"),
    ("environments.yaml", "        address: 127.0.0.1", "        address: \"127.0.0.1\\r\\nx\"", "control character"),
    ("environments.yaml", "  - name: dev-1", "  - name: ..", "a host name is"),
    ("environments.yaml", "  path: .releaser/state.db", "  path: playbooks", "expected the path of a database file"),
    ("environments.yaml", "pipeline:\n  - stage: selftest", "pipeline: []\nx:\n  - stage: selftest", "at least one stage"),
    ("environments.yaml", "      timeout: 5s", "      timeout: 5s\n      bearer_env: \"$(id)\"", "name of an environment variable"),
]


def _known_base() -> dict[str, str]:
    files = {**EXAMPLES, "healthchecks/limits.yaml": THRESHOLD}
    files["environments.yaml"] = files["environments.yaml"].replace("checks: [demo]\n    bake: 1h",
                                                                    "checks: [demo, limits]\n    bake: 1h")
    return files


def test_the_known_cases_start_from_a_valid_configuration(workdir):
    _write(workdir / "base", _known_base())
    result = _invoke(["-c", str(workdir / "base" / "environments.yaml"), "validate"])
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("file, old, new, message", KNOWN, ids=[f"{c[0]}:{c[2][:30]}" for c in KNOWN])
def test_known_hostile_configurations_end_in_file_line_key_message(workdir, file, old, new, message):
    files = _known_base()
    assert old in files[file], old
    text = files[file].replace(old, new, 1)
    case = {**files, file: text.encode("utf-8", "surrogateescape")}
    project = workdir / "known"
    _write(project, case)
    result = _invoke(["-c", str(project / "environments.yaml"), "validate"])
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr, result.stderr
    _assert_config_problems(project, result.stderr)
    assert not (project / ".releaser").exists()
