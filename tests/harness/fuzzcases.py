"""Fuzz cases for configuration and command lines, run in-process through click's CliRunner;
shared by tests/test_fuzz.py (which asserts) and bench/hostile (which counts).

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

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from releaser.cli import cli
from releaser.scaffold import FILES as SCAFFOLD
from tests.harness.tarballs import tar_gz

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "environments.yaml": (REPO / "environments.example.yaml").read_text(),
    **{
        f"{d}/{p.name}": p.read_text() for d in ("playbooks", "healthchecks") for p in sorted((REPO / d).glob("*.yaml"))
    },
}
BASES = {"scaffold": dict(SCAFFOLD), "example": EXAMPLES}
FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=os.environ.get("RELEASER_FUZZ_RANDOM") is None,
    suppress_health_check=list(HealthCheck),
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)

SNIPPETS = [
    "\x00",
    "\t",
    ": ",
    "- ",
    "&a ",
    "*a",
    "*undefined ",
    "!!int x ",
    "!!bool maybe ",
    "!!float .x ",
    "!!python/object/apply:os.system ['touch PWNED'] ",
    "!!binary x ",
    "!!timestamp 2020-02-30 ",
    "{",
    "[",
    "]",
    "}",
    '"',
    "'",
    "\r\n",
    "\r",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
    "? ",
    "<<: *a\n",
    "\ufeff",
    "\x85",
    "\u2028",
    "@",
    "`",
    "|",
    ">",
    "#",
    "[" * 120,
    "x: &a [1,2,3]\ny: [*a,*a,*a]\n",
    "\x1b[31m",
    "{host.x}",
    "{host:>900000000}",
    "l0: &l0 [a,a,a,a,a,a,a,a,a,a]\nl1: &l1 [*l0,*l0,*l0,*l0,*l0,*l0,*l0,*l0,*l0,*l0]\n"
    "l2: &l2 [*l1,*l1,*l1,*l1,*l1,*l1,*l1,*l1,*l1,*l1]\nl3: [*l2,*l2,*l2,*l2,*l2,*l2,*l2,*l2,*l2,*l2]\n",
    "a: &r [*r]\n",
    "? [a, b]\n: c\n",
    "2020-02-30",
    "99999999999999999999d",
    ".nan",
    "-.inf",
    "0x1F",
    "0o17",
    "1_000",
    "~",
    "null",
    "yes",
    "on",
    "=",
    "<<",
    "\\",
    "\\x",
    "\\u0000",
]
HOSTILE_VALUES = [
    None,
    "",
    " ",
    0,
    -1,
    1.5,
    10**30,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    [],
    {},
    [[]],
    {"x": 1},
    [None],
    "x" * 5000,
    "99999999999999999999d",
    "0s",
    "-5s",
    "1e3s",
    "5",
    "1h30",
    "a\r\nBcc: evil@example.org",
    "\x1b[31mred",
    "\x07",
    "{host.x}",
    "{host:>900000000}",
    "{0}",
    "{name!r}",
    "{}",
    "$(touch PWNED)",
    "`id`",
    "; rm -rf /",
    "../../etc/passwd",
    "/",
    ".",
    "..",
    "2020-02-30",
    "http://u:p@[::1",
    "ftp://example.org/",
    "100%",
    "0%",
    "101%",
    "-10%",
    "nan%",
    ".nan",
    "9" * 400,
    "ünïcødé",
    "名前",
    "a" * 64,
    "-rf",
    "a b",
    "%",
    "{{",
    "}}",
]
NAME_TYPO = st.sampled_from(["", "s", "_", "-", "x"])


def tree(directory: Path) -> dict[str, bytes | None]:
    """Every path below `directory` with its bytes (None for directories and links)."""
    found: dict[str, bytes | None] = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = Path(root, name)
            rel = str(path.relative_to(directory))
            found[rel] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return found


def write_files(directory: Path, files: dict[str, str | bytes]) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


class Crash(Exception):
    """releaser raised instead of ending with an exit code."""


def invoke(args: list[str]):
    """Run releaser in this process; Crash on a traceback."""
    result = CliRunner(env={"NO_COLOR": "1"}).invoke(cli, args, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        trace = "".join(traceback.format_exception(result.exception))
        raise Crash(f"releaser {args!r} crashed:\n{trace}\nstderr:\n{result.stderr}")
    if "Traceback" in result.stderr + result.stdout:
        raise Crash(f"releaser {args!r} printed a traceback:\n{result.stderr}")
    return result


PROBLEM_LINE = re.compile(r"^  (?P<file>[^\s:][^:]*):(?P<line>\d+): ")
GOOD = ("accepted", "refused")  # the outcomes that are not findings


def config_problems_without_place(directory: Path, stderr: str) -> list[str]:
    """The problems printed that do not name a file of the configuration and a line inside it."""
    lines = [line for line in stderr.splitlines() if line.startswith("  ")]
    if not lines:
        return [f"no problem listed: {stderr!r}"]
    bad = []
    for line in lines:
        match = PROBLEM_LINE.match(line)
        path = None if not match else Path(match["file"]) if os.path.isabs(match["file"]) else directory / match["file"]
        if path is None or not path.is_file() or not 1 <= int(match["line"]) <= path.read_bytes().count(b"\n") + 1:
            bad.append(line)
    return bad


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
        mutated = "".join(lines[:index] + lines[index + count :])
    elif kind == "duplicate":
        mutated = "".join(lines[: index + 1] + lines[index:])
    elif kind == "bytes":
        raw = text.encode()
        mutated = raw[:pos] + draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80"])) + raw[pos:]
    else:
        mutated = text[:pos]
    return {**files, name: mutated}


def _paths(value, prefix=()):
    """Every path (tuple of keys and indexes) into a loaded YAML value, at most 30 deep (an
    earlier mutation may have made it recursive)."""
    yield prefix
    if len(prefix) >= 30:
        return
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*prefix, i))


@st.composite
def value_mutation(draw, files: dict[str, str]) -> dict[str, str]:
    """A hostile value at any path of one file, a key removed, or a near-miss key added."""
    name = draw(st.sampled_from(sorted(files)))
    try:
        data = yaml.safe_load(files[name])
    except Exception:
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
        new_key = (
            key[:cut] + draw(NAME_TYPO) + key[cut + 1 :]
            if kind == "typo"
            else draw(st.sampled_from(["colour", "bakes", "hosts ", "x-extra", "", "__class__"]))
        )
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


def run_config_case(project: Path, case: dict[str, str | bytes]) -> tuple[str, str]:
    """Validate a configuration, and with one accepted, run the commands that read it.
    (outcome, detail): accepted | refused | traceback | wrong exit code | state written | no file:line."""
    write_files(project, case)
    before = tree(project)
    config = str(project / "environments.yaml")
    try:
        result = invoke(["-c", config, "validate"])
        if tree(project) != before:
            return "state written", "validate"
        if result.exit_code == 2:
            bad = config_problems_without_place(project, result.stderr)
            return ("no file:line", "\n".join(bad)) if bad else ("refused", "")
        if result.exit_code != 0:
            return "wrong exit code", f"validate exited {result.exit_code}: {result.stderr}"
        for args in (["status", "--json"], ["history"], ["watch", "--once"], ["resume"], ["report", "due"]):
            result = invoke(["-c", config, *args])
            if result.exit_code != 0:
                return "wrong exit code", f"{args} exited {result.exit_code}: {result.stderr}"
            if tree(project) != before:
                return "state written", str(args)
    except Crash as crash:
        return "traceback", str(crash)
    return "accepted", ""


# -- command lines --------------------------------------------------------------------------


HOSTILE_WORDS = [
    "",
    " ",
    "-",
    "--",
    "..",
    "/",
    "x" * 300,
    "\x1b[2J",
    "a\nb",
    "$(touch PWNED)",
    "1.0.0;id",
    "99999999999999999999999",
    "-1",
    "0",
    "nan",
    "名前",
    "prod",
    "dev",
    "due",
    "1.0.0",
    "9.9.9",
    "../1.0.0",
    "v1",
    "%s",
    "{}",
    "--json",
]


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


def make_cli_project(root: Path) -> dict[str, str]:
    """A scaffolded project in root/project with one release registered, and hostile paths beside it."""
    project = root / "project"
    write_files(project, SCAFFOLD)
    artifact = root / "app.tar.gz"
    artifact.write_bytes(tar_gz({"app.txt": "hi\n"}))
    config = str(project / "environments.yaml")
    assert invoke(["-c", config, "release", "create", "1.0.0", "--artifact", str(artifact)]).exit_code == 0
    (root / "loop").symlink_to(root / "loop")
    (root / "dangling").symlink_to(root / "nowhere" / "x")
    (root / "file").write_text("a file\n")
    (root / "dir").mkdir()
    (root / "fifo").exists() or os.mkfifo(root / "fifo")
    (root / "bad.yaml").write_bytes(b"project: \xff\n")
    paths = {
        "artifact": str(artifact),
        "config": config,
        "missing": str(root / "missing" / "x"),
        "loop": str(root / "loop"),
        "dangling": str(root / "dangling"),
        "file": str(root / "file"),
        "dir": str(root / "dir"),
        "fifo": str(root / "fifo"),
        "bad": str(root / "bad.yaml"),
        "zero": "/dev/zero",
        "full": "/dev/full",
        "null": "/dev/null",
        "state": str(project / ".releaser"),
    }
    return paths


def restore(root: Path, before: dict[str, bytes | None]) -> None:
    """Undo what a successful command wrote (a fresh `init`, a release), so cases stay independent."""
    after = tree(root)
    for rel in sorted(set(after) - set(before), key=len, reverse=True):
        path = root / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    for rel, content in before.items():
        if content is not None and after.get(rel) != content:
            (root / rel).write_bytes(content)


def run_command_case(root: Path, paths: dict[str, str], argv: list[str]) -> tuple[str, str]:
    """One command line against the project made by make_cli_project; what it wrote is undone.
    (outcome, detail): accepted | refused | traceback | wrong exit code | state written | escapes shown."""
    if argv[0] not in ("-c", "-C"):
        argv = ["-c", paths["config"], *argv]
    before = tree(root)
    cwd = os.getcwd()
    try:
        result = invoke(argv)
    except Crash as crash:
        return "traceback", str(crash)
    finally:
        os.chdir(cwd)  # -C changes the directory of this process
        written = tree(root) != before
        restore(root, before)
    if result.exit_code not in (0, 1, 2, 3, 4, 5):
        return "wrong exit code", f"{argv} exited {result.exit_code}"
    if list(root.rglob("PWNED*")):
        return "injection", str(argv)
    if "\x1b[2J" in result.stderr + result.stdout:
        return "escapes shown", str(argv)
    if result.exit_code == 2:
        if written:
            return "state written", f"{argv}: {result.stderr}"
        if not result.stderr.strip():
            return "wrong exit code", f"{argv} exited 2 without a message"
        return "refused", ""
    return "accepted", ""
