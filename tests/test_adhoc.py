"""`releaser exec` and `releaser logs`: a command on an environment's hosts, the app's log where
releaser runs the app. In-process on local-transport hosts (directories), then over real sshd
and with a real podman container."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from releaser.cli import cli
from releaser.demo.ports import free_ports
from releaser.model import Host
from releaser.transport.local import LocalSession
from tests.harness.marks import needs
from tests.harness.project import HOSTS
from tests.harness.sshd import ssh_session

HOSTILE = ["'; touch /tmp/pwned-releaser", "$(id)", "line one\nline two", "`id`", "a b", "*", ""]

SERVICE = 'service:\n  command: "exec sleep 300"\n'
HOOKS = "hooks:\n  restart: echo restarted\n"


class Hosts:
    """A project of three local hosts in dev (a, b, web-1), each with CODE in its vars: `a` runs
    release 1.0 (a `current`), `b` has a root and nothing deployed, web-1 has no root at all; and
    an environment of one host (`one`: s)."""

    def __init__(self, directory: Path, playbook: str = SERVICE):
        self.dir = directory
        (directory / "playbooks").mkdir(parents=True)
        (directory / "playbooks" / "app.yaml").write_text(playbook)
        (directory / "environments.yaml").write_text(
            "project: shop\nenvironments:\n  dev:\n    transport: local\n    playbook: app\n    root: hosts/{host}\n"
            "    hosts:\n"
            "      - {name: a, vars: {CODE: '0'}}\n      - {name: b, vars: {CODE: '3'}}\n"
            "      - {name: web-1, vars: {CODE: '0'}}\n"
            "  one:\n    transport: local\n    playbook: app\n    root: solo/{host}\n    hosts: [s]\n"
            "pipeline:\n  - {stage: selftest, environment: dev}\n"
        )
        (directory / "hosts" / "a" / "releases" / "1.0").mkdir(parents=True)
        (directory / "hosts" / "a" / "current").symlink_to("releases/1.0")
        (directory / "hosts" / "b").mkdir()

    def cli(self, *args: str, actor: str = "alice"):
        runner = CliRunner(env={"NO_COLOR": "1", "RELEASER_ACTOR": actor})
        return runner.invoke(cli, ["-C", str(self.dir), *args], catch_exceptions=False)

    def log(self, host: str, text: str) -> Path:
        path = self.dir / "hosts" / host / "logs" / "app.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def events(self, kind: str) -> list[dict]:
        history = json.loads(self.cli("history", "--json").stdout)["events"]
        return [e for e in history if e["kind"] == kind]


@pytest.fixture
def hosts(tmp_path):
    return Hosts(tmp_path / "proj")


def test_exec_runs_in_current_with_the_hooks_variables_and_says_each_hosts_exit(hosts):
    script = 'echo "$RELEASER_HOST ${RELEASER_RELEASE:-none} $PWD $RELEASER_PHASE"; echo said >&2; exit "$CODE"'
    result = hosts.cli("exec", "dev", "--", "bash", "-c", script)
    assert result.exit_code == 1, result.output
    root = hosts.dir / "hosts"
    # after the host's name, since there are several; stdout stays stdout, stderr stderr
    assert result.stdout.splitlines() == [
        f"a: a 1.0 {root}/a/current exec",
        f"b: b none {root}/b exec",
        f"web-1: web-1 none {hosts.dir} exec",
    ]
    assert "b: said" in result.stderr and "b: exit 3" in result.stderr
    assert (
        f"web-1: releaser: {root}/web-1 does not exist on this host; the command runs in {hosts.dir}" in result.stderr
    )
    assert "exec on dev: failed on b" in result.stderr

    ran = hosts.events("exec.ran")[-1]
    assert ran["data"]["exit_codes"] == {"a": 0, "b": 3, "web-1": 0}
    assert ran["data"]["by"] == "alice" and ran["data"]["command"] == ["bash", "-c", script]
    assert [e["data"]["hosts"] for e in hosts.events("exec.started")] == [["a", "b", "web-1"]]


def test_exec_on_named_hosts_in_json_and_exit_0_when_each_exits_0(hosts):
    result = hosts.cli("exec", "dev", "--hosts", "web-1", "--host", "a", "--json", "--", "printf", "%s", "x")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is True and document["exit_code"] == 0 and document["command"] == ["printf", "%s", "x"]
    assert [(h["host"], h["exit_code"], h["stdout"]) for h in document["hosts"]] == [("a", 0, "x"), ("web-1", 0, "x")]
    assert all(set(h) >= {"host", "exit_code", "stdout", "stderr", "duration"} for h in document["hosts"])


def test_each_argument_reaches_the_host_as_one_word(hosts, tmp_path):
    marker = tmp_path / "pwned"
    args = [*HOSTILE, f"; touch {marker}"]
    result = hosts.cli(
        "exec", "one", "--json", "--", "python3", "-c", "import json,sys; print(json.dumps(sys.argv[1:]))", *args
    )
    assert result.exit_code == 0, result.output
    assert json.loads(json.loads(result.stdout)["hosts"][0]["stdout"]) == args
    assert not marker.exists()


def test_exec_past_its_timeout_fails_the_host(hosts):
    result = hosts.cli("exec", "one", "--timeout", "1s", "--", "sleep", "30")
    assert result.exit_code == 1 and "(timed out after 1s)" in result.stderr and "exit -1" not in result.stderr


def test_a_host_that_prints_escape_sequences_cannot_repaint_the_terminal(hosts):
    result = hosts.cli("exec", "one", "--", "printf", r"\033]0;owned\007\033[31mred\033[0m\r\n\033[2Jbell\007\n")
    assert result.exit_code == 0
    assert result.stdout == "red\nbell\\x07\n"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["exec", "prd", "--", "true"], "unknown environment 'prd'"),
        (["exec", "dev", "--hosts", "web1,a", "--", "true"], "no host 'web1' in dev (did you mean `web-1`?)"),
        (["exec", "dev", "--host", "zz", "--", "true"], "no host 'zz' in dev (hosts: a, b, web-1)"),
        (["exec", "dev", "--timeout", "soon", "--", "true"], "--timeout"),
        (["logs", "dve"], "unknown environment 'dve' (did you mean `dev`?)"),
        (["logs", "dev", "-f"], "-f follows one host's log: name it with --host (dev has 3 hosts)"),
    ],
)
def test_bad_input_is_refused_and_nothing_runs(hosts, args, said):
    result = hosts.cli(*args)
    assert result.exit_code == 2 and said in result.stderr, result.output
    assert hosts.events("exec.started") == []


def test_logs_shows_the_last_lines_of_each_hosts_service_log_after_its_name(hosts):
    hosts.log("a", "".join(f"line {i}\n" for i in range(1, 6)))
    hosts.log("b", "starting\n\x1b[1;31mfailed\x1b[0m\r\n")
    several = hosts.cli("logs", "dev", "-n", "2")
    assert several.exit_code == 1
    assert several.stdout.splitlines() == ["a: line 4", "a: line 5", "b: starting", "b: failed"]
    assert f"web-1: releaser: no {hosts.dir}/hosts/web-1 on this host: nothing deployed here" in several.stderr
    assert "logs on dev: failed on web-1" in several.stderr

    one = hosts.cli("logs", "dev", "--host", "a", "-n", "3")
    assert one.exit_code == 0 and one.stdout == "line 3\nline 4\nline 5\n"
    (hosts.dir / "hosts" / "b" / "logs" / "app.log").unlink()
    missing = hosts.cli("logs", "dev", "--host", "b", "--json")
    assert missing.exit_code == 1
    assert "the app service has never started on this host" in json.loads(missing.stdout)["hosts"][0]["stderr"]
    assert hosts.events("exec.started") == []  # reading a log is not journaled


def test_logs_of_an_app_releaser_does_not_run_points_to_exec(tmp_path):
    hosts = Hosts(tmp_path / "proj", playbook=HOOKS)
    result = hosts.cli("logs", "dev", "--host", "a")
    assert result.exit_code == 2
    assert "releaser does not run this app's process" in result.stderr
    assert "`releaser exec dev -- tail -n 100 PATH`" in result.stderr


def test_a_stream_stopped_by_its_reader_ends_what_it_followed(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("first\n")
    session = LocalSession(Host("h", "127.0.0.1", str(tmp_path)))
    seen: list[str] = []

    def reader(text: str) -> None:
        seen.append(text)
        if "first" in "".join(seen):
            with open(log, "a") as handle:
                handle.write("second\n")
        if "second" in "".join(seen):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session.stream(f"exec tail -n 5 -F {log}", reader)
    assert "".join(seen) == "first\nsecond\n"
    assert _followers(log) == []


def test_a_stream_that_ends_returns_its_exit_status(tmp_path):
    said: list[str] = []
    session = LocalSession(Host("h", "127.0.0.1", str(tmp_path)))
    assert session.stream("echo out; echo err >&2; exit 7", said.append) == 7
    assert "".join(said) == "out\nerr\n"


def _followers(path: Path) -> list[int]:
    """The processes still following `path` (a tail on it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"tail") and str(path).encode() in args:
                found.append(int(entry.name))
    return found


@pytest.mark.real  # releaser as a process, stopped by Ctrl-C
def test_logs_f_follows_one_host_until_ctrl_c(hosts):
    log = hosts.dir / "solo" / "s" / "logs" / "app.log"
    log.parent.mkdir(parents=True)
    log.write_text("old 1\nold 2\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "releaser.cli", "-C", str(hosts.dir), "logs", "one", "-f", "-n", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        assert _line(proc) == "old 2"
        with open(log, "a") as handle:
            handle.write("new \x1b[32mline\x1b[0m\n")
        assert _line(proc) == "new line"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
    finally:
        proc.kill()
        proc.wait()
    assert _followers(Path("logs/app.log")) == [] and _followers(log) == []


def _line(proc: subprocess.Popen, timeout: float = 20) -> str:
    """The next line the process prints, waited for (the test fails when none comes)."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr] - a pipe
    reader.start()
    reader.join(timeout)
    assert got, f"no line within {timeout}s"
    return got[0].rstrip("\n")


# -- over real sshd --


ARGV = "import json, os, sys; print(json.dumps([os.environ['RELEASER_HOST'], *sys.argv[1:]]))"


def test_exec_over_ssh_gives_each_hosts_exit_and_each_argument_as_one_word(ssh_project, tmp_path):
    project = ssh_project
    marker = tmp_path / "pwned"
    args = [*HOSTILE, f"; touch {marker}", f"$(touch {marker})"]
    script = f"{ARGV}; sys.exit(0 if os.environ['RELEASER_HOST'] == 'test-1' else 5)"
    proc = project.cli("exec", "test", "--json", "--", "python3", "-c", script, *args)
    assert proc.returncode == 1, proc.stderr
    hosts = {h["host"]: h for h in json.loads(proc.stdout)["hosts"]}
    assert {name: h["exit_code"] for name, h in hosts.items()} == {"test-1": 0, "test-2": 5}
    for name, host in hosts.items():
        assert json.loads(host["stdout"]) == [name, *args]
    assert not marker.exists()
    assert "exec on test: failed on test-2" in proc.stderr


def test_exec_over_ssh_names_a_host_it_cannot_reach_and_exits_4(ssh_project):
    project = ssh_project
    names = [h for hosts in HOSTS.values() for h in hosts]
    address = project.fleet.addresses[names.index("web-5")]
    project.fleet.stop(project.fleet.server_of(address))  # web-1 is served by another sshd
    proc = project.cli("exec", "prod", "--hosts", "web-1,web-5", "--", "true")
    assert proc.returncode == 4, proc.stderr
    assert "web-5: not reached:" in proc.stderr and "exec on prod: not reached: web-5" in proc.stderr
    assert "web-1: exit 0" in proc.stderr


def test_logs_of_a_service_over_ssh(ssh_project):
    project = ssh_project
    (project.dir / "playbooks" / "app.yaml").write_text(SERVICE)
    for host in ("test-1", "test-2"):
        log = project.dir / "hosts" / host / "logs" / "app.log"
        log.parent.mkdir(parents=True)
        log.write_text("".join(f"{host} {i}\n" for i in range(1, 4)))
    proc = project.cli("logs", "test", "-n", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["test-1: test-1 2", "test-1: test-1 3", "test-2: test-2 2", "test-2: test-2 3"]


def test_a_stream_over_ssh_ends_what_it_followed_when_its_reader_stops(ssh_fleet, tmp_path):
    log = tmp_path / "followed.log"
    log.write_text("first\n")
    session = ssh_session(ssh_fleet, ssh_fleet.addresses[0])
    seen: list[str] = []

    def reader(text: str) -> None:
        seen.append(text)
        if "".join(seen) == "first\n":
            with open(log, "a") as handle:
                handle.write("second\n")
        if "second" in "".join(seen):
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            session.stream(f"exec tail -n 5 -F {log}", reader)
        assert "".join(seen) == "first\nsecond\n"
        # the host ends it once the closed channel reaches it: wait for that, boundedly
        deadline = time.monotonic() + 10
        while _followers(log) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _followers(log) == []
        assert session.stream("echo over ssh; exit 3", seen.append) == 3 and seen[-2:] == ["over ssh\n", ""]
    finally:
        session.close()


# -- with a real container --


@pytest.mark.podman
def test_logs_of_the_running_container(tmp_path):
    from tests.harness.containers import _app_binary, podman, podman_conf, stop_all

    needs("podman")
    confs = {host: podman_conf(tmp_path / "podman" / host) for host in ("a", "b")}
    context = tmp_path / "image"
    context.mkdir()
    shutil.copy(_app_binary(), context / "app")
    (context / "Containerfile").write_text('FROM scratch\nCOPY app /app\nENV VERSION=1.0\nENTRYPOINT ["/app"]\n')
    podman(confs["a"], "build", "-q", "-t", "localhost/shop:1.0", str(context))
    port = free_ports(1)[0]
    try:
        podman(
            confs["a"],
            *("run", "-d", "--name", "shop-1.0", "--label", "releaser.app=shop", "--network", "host"),
            *("-e", f"PORT={port}", "localhost/shop:1.0"),
        )
        project = tmp_path / "proj"
        (project / "playbooks").mkdir(parents=True)
        (project / "playbooks" / "app.yaml").write_text("container:\n  name: shop\n")
        hosts = ", ".join(
            f"{{name: {h}, vars: {{CONTAINERS_CONF: {c['CONTAINERS_CONF']}, "
            f"CONTAINERS_STORAGE_CONF: {c['CONTAINERS_STORAGE_CONF']}}}}}"
            for h, c in confs.items()
        )
        (project / "environments.yaml").write_text(
            "project: shop\nenvironments:\n  dev:\n    transport: local\n    playbook: app\n    root: hosts/{host}\n"
            f"    hosts: [{hosts}]\npipeline:\n  - {{stage: selftest, environment: dev}}\n"
        )
        runner = CliRunner(env={"NO_COLOR": "1"})
        result = runner.invoke(cli, ["-C", str(project), "logs", "dev"], catch_exceptions=False)
        assert result.stdout == f"a: serving 1.0 on 127.0.0.1:{port}\n", result.output
        assert result.exit_code == 1
        assert "b: releaser: no running container of shop on this host (podman ps lists none" in result.stderr
    finally:
        for conf in confs.values():
            stop_all(conf)
