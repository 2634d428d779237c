"""The pipeline over real OpenSSH servers on loopback addresses."""

from __future__ import annotations

import json
import threading
import time

import pytest

from releaser.cohort import split_waves, stable_order
from releaser.model import Host
from tests.harness.project import HOSTS
from tests.harness.sshd import ssh_session


def address_of(project, host: str) -> str:
    names = [h for hosts in HOSTS.values() for h in hosts]
    return project.fleet.addresses[names.index(host)]


def test_four_stages_end_to_end_over_ssh(ssh_project):
    project = ssh_project
    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    project.register("1.1.0")
    proc = project.cli("run", "1.1.0", "--json", check=True)
    assert [r["status"] for r in json.loads(proc.stdout)["runs"]] == ["passed"] * 4
    for env, hosts in HOSTS.items():
        assert project.env_versions(env) == {h: "1.1.0" for h in hosts}
    # the hosts really ran the hooks (over ssh, as this user)
    assert (project.dir / "hosts" / "web-7" / "shared" / "running").read_text() == "1.1.0\n"


CANARY = """\
checks:
  - name: canary
    type: canary
    requests: app_requests_total
    errors: 'app_requests_total{code=~"5.."}'
"""


def test_a_first_install_over_ssh_runs_every_stage_and_says_why_the_canary_does_not_apply(ssh_project):
    """`run v1` on an empty fleet: at gray no host runs an earlier release, so the canary has
    nothing to compare; it says so, the journal records why, and the other checks decide."""
    project = ssh_project
    (project.dir / "healthchecks" / "canary.yaml").write_text(CANARY)
    config = project.dir / "environments.yaml"
    text = config.read_text()
    gray = text.index("  - stage: gray")
    text = text[:gray] + text[gray:].replace("checks: [health]", "checks: [health, canary]", 1)
    text = text.replace(
        "  prod:\n", "  prod:\n    metrics: {source: scrape, scrape_url: 'http://{address}:9/metrics'}\n"
    )
    config.write_text(text)
    project.register("1.0.0")
    proc = project.cli("run", "1.0.0", "--json", check=True)
    assert [r["status"] for r in json.loads(proc.stdout)["runs"]] == ["passed"] * 4
    assert set(project.env_versions("prod").values()) == {"1.0.0"}
    events = json.loads(project.cli("history", "--json", check=True).stdout)["events"]
    why = [e for e in events if e["kind"] == "check.not_applicable"]
    assert (
        len(why) == 1 and why[0]["stage"] == "gray" and "no host of prod runs an earlier release" in why[0]["message"]
    )


def nothing_recorded(project, version: str = "1.0.0") -> None:
    """A mistake ended the command before its stage started: no stage run, no rollback, no
    incident, the release as it was registered."""
    release = next(r for r in project.status()["releases"] if r["version"] == version)
    assert release["stages"] == [] and release["status"] == "registered" and not release["reason"]
    events = json.loads(project.cli("history", "--release", version, "--json", check=True).stdout)["events"]
    kinds = {e["kind"] for e in events}
    assert not kinds & {"stage.started", "stage.failed", "rollback.started", "incident"}, kinds


def test_changed_host_key_is_refused_with_its_fingerprint(ssh_project):
    project = ssh_project
    project.register("1.0.0")
    server = project.fleet.server_of(address_of(project, "dev-1"))
    project.fleet.rekey(server)
    proc = project.cli("promote", "1.0.0")
    assert proc.returncode == 4, proc.stderr  # a person must look: a reinstalled host, or someone in the middle
    assert "HOST KEY CHANGED" in proc.stderr and "SHA256:" in proc.stderr and "dev-1" in proc.stderr
    assert "selftest of 1.0.0 did not start" in proc.stderr and "nothing was changed or recorded" in proc.stderr
    assert project.current("dev-1") is None
    nothing_recorded(project)


def test_unknown_host_key_refused_unless_accept_new(ssh_project, tmp_path):
    project = ssh_project
    project.register("1.0.0")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    project.write_config(ssh=project.fleet, ssh_extra={"known_hosts": str(empty)})
    refused = project.cli("promote", "1.0.0")
    assert refused.returncode == 2 and "unknown host key ssh-ed25519 SHA256:" in refused.stderr
    assert "releaser validate --connect" in refused.stderr
    assert project.current("dev-1") is None and empty.read_text() == ""
    nothing_recorded(project)

    project.write_config(ssh=project.fleet, ssh_extra={"known_hosts": str(empty), "host_key_policy": "accept-new"})
    project.cli("promote", "1.0.0", check=True)
    assert project.current("dev-1") == "1.0.0"
    assert f"[{address_of(project, 'dev-1')}]:{project.fleet.port} ssh-ed25519" in empty.read_text()
    events = json.loads(project.cli("history", "--json", check=True).stdout)["events"]
    assert any(e["kind"] == "hostkey.accepted" and e["host"] == "dev-1" for e in events)


def test_a_missing_key_file_is_a_configuration_error_at_its_line(ssh_project, tmp_path):
    project = ssh_project
    project.register("1.0.0")
    project.write_config(ssh=project.fleet, ssh_extra={"identity_file": str(tmp_path / "no_such_key")})
    config = (project.dir / "environments.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(config, 1) if "no_such_key" in text)
    checked = project.cli("validate")
    assert checked.returncode == 2
    assert f"environments.yaml:{line}: environments.dev.ssh.identity_file:" in checked.stderr
    assert "no_such_key: no such file on this machine" in checked.stderr
    proc = project.cli("promote", "1.0.0")
    assert proc.returncode == 2 and "no_such_key: no such file on this machine" in proc.stderr
    assert "unreachable" not in proc.stderr
    nothing_recorded(project)


def test_a_key_the_hosts_refuse_names_the_cause_and_changes_nothing(ssh_project, tmp_path):
    import subprocess

    project = ssh_project
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    project.register("1.1.0")
    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    project.write_config(ssh=project.fleet, ssh_extra={"identity_file": str(wrong)})
    assert project.cli("validate").returncode == 0  # the file is there: only connecting tells
    connected = project.cli("validate", "--connect")
    assert connected.returncode == 2 and "authentication failed" in connected.stderr
    assert all(host in connected.stderr for hosts in HOSTS.values() for host in hosts)
    proc = project.cli("promote", "1.1.0")
    assert proc.returncode == 2 and "dev-1: dev-1: authentication failed as" in proc.stderr
    assert str(wrong) in proc.stderr
    nothing_recorded(project, "1.1.0")
    assert project.current("dev-1") == "1.0.0"
    plan = project.cli("rollback", "dev", "--dry-run")  # each host's cause, not only that it cannot be asked
    assert plan.returncode == 4 and "dev-1: dev-1: authentication failed as" in plan.stderr


def test_a_root_that_cannot_be_written_is_named_before_the_stage(ssh_project):
    project = ssh_project
    project.register("1.0.0")
    project.write_config(ssh=project.fleet)
    config = project.dir / "environments.yaml"
    mine = f'root: "{project.dir}/hosts/{{host}}"'
    config.write_text(config.read_text().replace(mine, 'root: "/etc/hostname/{host}"', 1))
    proc = project.cli("promote", "1.0.0")
    assert proc.returncode == 2, proc.stderr
    assert "the root /etc/hostname/dev-1 cannot be written by" in proc.stderr
    nothing_recorded(project)


def test_sshd_stopped_mid_stage_rolls_back_switched_hosts(ssh_project):
    project = ssh_project
    for version in ("1.0.0", "1.1.0"):
        project.register(version)
    project.cli("run", "1.0.0", check=True)
    project.cli("run", "1.1.0", "--to", "gray", check=True)
    project.stage_options["full"] = "    waves: [50%, 100%]\n"
    project.write_config(ssh=project.fleet, restart_delay="0.3")
    prod = [Host(h, address_of(project, h), "/") for h in HOSTS["prod"]]
    gray = next(h for h in HOSTS["prod"] if project.current(h) == "1.1.0")
    rest = [h for h in stable_order("prod", prod) if h.name != gray]
    first_wave, second_wave = split_waves(rest, (50, 100))
    victim = next(
        h
        for h in second_wave
        if not set(project.fleet.server_of(h.address).addresses)
        & {x.address for x in [*first_wave, Host(gray, address_of(project, gray), "/")]}
    )
    server = project.fleet.server_of(victim.address)

    promotion = project.spawn("promote", "1.1.0", "--json")
    deadline = time.monotonic() + 60
    while not any(project.current(h.name) == "1.1.0" for h in first_wave):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    project.fleet.stop(server)
    _out, err = promotion.communicate(timeout=120)
    assert promotion.returncode == 1, err
    assert victim.name in err and "unreachable" in err
    assert set(project.env_versions("prod").values()) == {"1.0.0"}
    status = project.status()
    hosts = status["environments"]["prod"]["hosts"]
    assert all(state["version"] == "1.0.0" for state in hosts.values())
    assert hosts[victim.name]["last"]["status"] == "failed" and "unreachable" in hosts[victim.name]["last"]["detail"]
    assert {hosts[h.name]["last"]["action"] for h in first_wave} == {"rollback"}
    human = project.cli("status").stdout
    assert victim.name in human and "unreachable" in human
    events = json.loads(project.cli("history", "--release", "1.1.0", "--json", check=True).stdout)["events"]
    failed = [e for e in events if e["kind"] == "host.failed"]
    assert {e["host"] for e in failed} >= {victim.name}
    assert any(e["kind"] == "rollback.done" for e in events)


def test_a_command_past_its_timeout_fails_the_host(ssh_project):
    project = ssh_project
    project.register("1.0.0")
    project.write_config(ssh=project.fleet, restart_delay="30", command_timeout="2s")
    started = time.monotonic()
    proc = project.cli("promote", "1.0.0")
    assert proc.returncode in (1, 4), proc.stderr
    assert "the restart hook did not return within 2s (command_timeout)" in proc.stderr
    assert time.monotonic() - started < 25


def test_failure_budget_per_wave(ssh_project):
    project = ssh_project
    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    gray = _gray(project)
    others = [h for h in HOSTS["prod"] if h != gray]
    project.stage_options["full"] = "    max_failed_hosts: 1\n"
    project.write_config(ssh=project.fleet)

    project.register("1.1.0", fail_prepare=(others[0],))
    project.cli("run", "1.1.0", check=True)
    versions = project.env_versions("prod")
    assert versions[others[0]] == "1.0.0"
    assert sum(v == "1.1.0" for v in versions.values()) == 9
    status = project.status()
    assert not status["environments"]["prod"]["consistent"]
    assert status["environments"]["prod"]["versions"] == {"1.1.0": 9, "1.0.0": 1}
    events = json.loads(project.cli("history", "--release", "1.1.0", "--json", check=True).stdout)["events"]
    degraded = next(e for e in events if e["kind"] == "stage.degraded")
    assert others[0] in degraded["message"]

    project.register("1.2.0", fail_prepare=tuple(others[:2]) + tuple(others[-2:]))
    proc = project.cli("run", "1.2.0")
    assert proc.returncode == 1 and "budget 1" in proc.stderr
    assert set(project.env_versions("prod").values()) <= {"1.0.0", "1.1.0"}
    assert project.status()["releases"][-1]["status"] == "rolled_back"


def test_pull_mode_hosts_fetch_the_artifact_and_check_it(ssh_project, tmp_path):
    import functools
    import http.server
    import threading

    project = ssh_project
    artifacts = project.dir / "artifacts"
    project.artifact("1.0.0")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(artifacts))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/app-1.0.0.tar.gz"
        text = (
            (project.dir / "environments.yaml")
            .read_text()
            .replace("    playbook: app\n", "    playbook: app\n    artifacts: pull\n")
        )
        (project.dir / "environments.yaml").write_text(text)
        refused = project.cli(
            "release", "create", "1.0.0", "--artifact", str(artifacts / "app-1.0.0.tar.gz"), check=True
        )
        assert refused.returncode == 0
        assert project.cli("promote", "1.0.0").returncode == 2  # no URL: refused before anything moves
        project.cli(
            "release", "create", "1.0.1", "--artifact", str(artifacts / "app-1.0.0.tar.gz"), "--url", url, check=True
        )
        project.cli("promote", "1.0.1", check=True)
        assert project.current("dev-1") == "1.0.1"
        # a URL serving other bytes fails the checksum on the host
        (artifacts / "other.tar.gz").write_bytes(b"not the artifact")
        project.cli(
            "release",
            "create",
            "1.0.2",
            "--artifact",
            str(artifacts / "app-1.0.0.tar.gz"),
            "--url",
            url.replace("app-1.0.0", "other"),
            check=True,
        )
        proc = project.cli("promote", "1.0.2")
        assert proc.returncode == 1 and "checksum mismatch" in proc.stderr
        assert project.current("dev-1") == "1.0.1"
    finally:
        server.shutdown()


def _gray(project) -> str:
    from releaser.cohort import gray_cohort

    return gray_cohort("prod", [Host(h, "x", "/") for h in HOSTS["prod"]], 10)[0].name


def test_one_connection_serves_many_execs_and_uploads(ssh_fleet, tmp_path):
    session = ssh_session(ssh_fleet, ssh_fleet.addresses[0])
    try:
        source = tmp_path / "payload"
        source.write_bytes(b"x" * 100_000)
        target = tmp_path / "deep" / "er" / "copy"
        session.put(str(source), str(target))
        assert target.read_bytes() == source.read_bytes()
        transport = session.connection.client.get_transport()
        for i in range(5):
            result = session.run(f"echo out {i}; echo err {i} >&2; exit {i}", 10)
            assert (result.exit_code, result.stdout, result.stderr) == (i, f"out {i}\n", f"err {i}\n")
        assert session.connection.client.get_transport() is transport
    finally:
        session.close()


def test_releasers_own_scripts_share_one_shell_and_each_gets_its_own_output_and_status(ssh_fleet):
    """One login shell per session for the phases: each script still runs in its own bash, with
    its own status, stdout and stderr, whatever it writes or leaves unread."""
    session = ssh_session(ssh_fleet, ssh_fleet.addresses[0])
    try:
        shell = session.run_in_shell("echo $PPID", 10).stdout
        scripts = [
            ("printf 'no newline at the end'; exit 3", 3, "no newline at the end", ""),
            ("echo out; echo err >&2; echo $PPID > /dev/null", 0, "out\n", "err\n"),
            ("export LEFT=1; cat; echo after-cat", 0, "after-cat\n", ""),  # stdin is not the next request
            ('echo "${LEFT:-unset}"; printf "\n\n"', 0, "unset\n\n\n", ""),
            ("echo '0123456789abcdef0123456789abcdef 0'; exit 7", 7, "0123456789abcdef0123456789abcdef 0\n", ""),
            ("printf '%s\n' 中文; echo 'it''s' >&2", 0, "中文\n", "its\n"),
        ]
        for script, code, out, err in scripts:
            result = session.run_in_shell(script, 10)
            assert (result.exit_code, result.stdout, result.stderr) == (code, out, err), script
        # the same shell ran them all: one login per session, not one per phase
        parents = {session.run_in_shell("ps -o ppid= -p $PPID", 10).stdout for _ in range(3)}
        assert len(parents) == 1
        assert session.run_in_shell("echo $PPID", 10).stdout != shell  # each script has its own timeout and bash
    finally:
        session.close()


def test_a_script_past_its_timeout_in_the_kept_shell_is_ended_and_the_next_gets_a_new_shell(ssh_fleet):
    session = ssh_session(ssh_fleet, ssh_fleet.addresses[0])
    try:
        before = session.run_in_shell("ps -o ppid= -p $PPID", 10).stdout
        result = session.run_in_shell("echo started; sleep 30", 1)
        assert result.timed_out and result.exit_code == 124 and result.stdout == "started\n"
        assert "timed out after 1s" in result.stderr
        after = session.run_in_shell("echo fine; ps -o ppid= -p $PPID", 10)
        assert after.ok and after.stdout.startswith("fine\n")
        assert after.stdout.removeprefix("fine\n") == before  # the remote timeout ended it; the shell went on
    finally:
        session.close()


def test_a_kept_shell_that_ended_while_idle_is_replaced_and_the_script_runs_once(ssh_fleet, tmp_path):
    """A host may end an idle shell between phases (TMOUT, sshd's ChannelTimeout): the next
    script goes to a new shell, and runs exactly once."""
    import os
    import signal

    session = ssh_session(ssh_fleet, ssh_fleet.addresses[2])
    counter = tmp_path / "runs"
    try:
        agent = int(session.run_in_shell("ps -o ppid= -p $PPID", 10).stdout)
        shell = session._shell
        os.kill(agent, signal.SIGKILL)  # the sshd hosts are on this machine
        assert shell is not None and shell.channel.status_event.wait(10)
        result = session.run_in_shell(f"echo ran >> {counter}; echo fine", 10)
        assert (result.exit_code, result.stdout) == (0, "fine\n")
        assert counter.read_text() == "ran\n"
        assert session._shell is not shell
    finally:
        session.close()


def test_a_connection_lost_mid_script_in_the_kept_shell_returns_what_was_said(ssh_fleet, tmp_path):
    """As a lone exec would: the output so far (record lines a phase wrote), no status; the
    session then refuses more work rather than dialling again."""
    session = ssh_session(ssh_fleet, ssh_fleet.addresses[1])
    marker = tmp_path / "started"
    transport = session.connection.client.get_transport()
    try:
        result_box = []
        worker = threading.Thread(
            target=lambda: result_box.append(
                session.run_in_shell(f"echo RELEASER_RECORD said; touch {marker}; sleep 30", 60)
            )
        )
        worker.start()
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        transport.close()  # the connection drops
        worker.join(20)
        (result,) = result_box
        assert result.exit_code == -1 and not result.ok
        assert result.stdout == "RELEASER_RECORD said\n"
        assert "the connection ended before the script did" in result.stderr
        with pytest.raises(ConnectionError, match="connection was lost"):
            session.run_in_shell("echo again", 10)
    finally:
        session.close()


def test_connections_are_set_up_at_most_handshakes_at_a_time(ssh_fleet, monkeypatch):
    """A fleet opens its sessions `parallel` at once, but only `handshakes` of them shake hands
    at once: the rest wait their turn rather than storm an sshd (or a jump host) together."""
    from fabric import Connection

    from releaser.fleet import Fleet
    from releaser.model import Environment
    from releaser.transport.ssh import SshTransport

    real_open, counting, pairs = Connection.open, threading.Lock(), threading.Barrier(2, timeout=20)
    inside, most = 0, 0

    def open_in_pairs(connection):
        nonlocal inside, most
        with counting:
            inside += 1
            most = max(most, inside)
        try:
            pairs.wait()  # two at once, or the test fails: the bound is reached, not just respected
            return real_open(connection)
        finally:
            with counting:
                inside -= 1

    monkeypatch.setattr(Connection, "open", open_in_pairs)
    ssh = ssh_fleet.options()
    hosts = tuple(Host(f"h{i}", address, "/tmp", ssh=ssh) for i, address in enumerate(ssh_fleet.addresses[:8]))
    env = Environment("e", "ssh", "app", hosts, parallel=8, handshakes=2)
    with Fleet(env, SshTransport(env)) as fleet:
        assert fleet.open(hosts) == {}
    assert most == 2


def test_ssh_config_file_is_honoured(ssh_fleet, tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host app-alias\n  HostName {ssh_fleet.addresses[1]}\n  Port {ssh_fleet.port}\n"
        f"  User {ssh_fleet.user}\n  IdentityFile {ssh_fleet.identity}\n"
    )
    session = ssh_session(ssh_fleet, "app-alias", config_file=str(config), port=None, user=None, identity_file=None)
    try:
        assert session.run("echo via-alias", 10).stdout == "via-alias\n"
    finally:
        session.close()


def test_bastion_is_used(ssh_fleet):
    jump = f"{ssh_fleet.user}@{ssh_fleet.addresses[2]}:{ssh_fleet.port}"
    session = ssh_session(ssh_fleet, ssh_fleet.addresses[5], jump=jump)
    try:
        assert session.run("echo through-the-bastion", 10).ok
    finally:
        session.close()
    # the same target through a bastion that does not answer cannot be reached: the jump is real
    with pytest.raises(ConnectionError, match="unreachable"):
        ssh_session(
            ssh_fleet, ssh_fleet.addresses[5], jump=f"{ssh_fleet.user}@127.0.0.250:{ssh_fleet.port}", connect_timeout=2
        )


def proxy_jump(fleet, tmp_path, jump: str, targets: list[str]):
    """A user's ssh_config sending `targets` through `jump` by ProxyJump: fabric, not releaser,
    builds that hop's connection."""
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host {' '.join(targets)}\n  ProxyJump {fleet.user}@{jump}:{fleet.port}\n"
        f"Host *\n  IdentityFile {fleet.identity}\n"
    )
    return config


def known_hosts_without(fleet, tmp_path, address: str, key_of: str | None = None):
    """The fleet's known_hosts without `address`'s key, or with the key of `key_of`'s server in its place."""
    name = f"[{address}]:{fleet.port} "
    lines = [line for line in fleet.known_hosts_lines().splitlines() if not line.startswith(name)]
    if key_of:
        lines.append(name + " ".join(fleet.server_of(key_of).host_key.with_suffix(".pub").read_text().split()[:2]))
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(lines) + "\n")
    return known


def test_a_changed_key_of_an_ssh_config_jump_host_is_refused(ssh_project, tmp_path):
    project = ssh_project
    fleet, dev, jump = project.fleet, address_of(project, "dev-1"), address_of(project, "web-10")
    assert fleet.server_of(dev) is not fleet.server_of(jump)
    known = known_hosts_without(fleet, tmp_path, jump, key_of=dev)
    config = proxy_jump(fleet, tmp_path, jump, [dev])
    project.write_config(ssh=fleet, ssh_extra={"known_hosts": str(known), "config_file": str(config)})
    project.register("1.0.0")
    proc = project.cli("promote", "1.0.0")
    assert proc.returncode == 4, proc.stderr
    assert f"dev-1 (jump host {jump}): HOST KEY CHANGED" in proc.stderr and "SHA256:" in proc.stderr
    assert project.current("dev-1") is None
    nothing_recorded(project)


def test_an_ssh_config_jump_host_of_unknown_key_is_refused(ssh_fleet, tmp_path):
    from releaser.transport.base import AccessRefused

    jump, target = ssh_fleet.addresses[12], ssh_fleet.addresses[0]
    known = known_hosts_without(ssh_fleet, tmp_path, jump)
    before = known.read_text()
    config = proxy_jump(ssh_fleet, tmp_path, jump, [target])
    with pytest.raises(AccessRefused) as refused:
        ssh_session(ssh_fleet, target, known_hosts=str(known), config_file=str(config))
    assert f"h (jump host [{jump}]:{ssh_fleet.port}): unknown host key ssh-ed25519 SHA256:" in str(refused.value)
    assert "host_key_policy: accept-new" in str(refused.value) and known.read_text() == before


def test_a_new_jump_host_key_is_recorded_once_for_the_hosts_behind_it(ssh_fleet, tmp_path, monkeypatch):
    """Under accept-new, every host behind a new jump host looks its key up (and misses it)
    before its turn to shake hands; the key is recorded, and journaled, once."""
    from fabric import Connection

    from releaser.fleet import Fleet
    from releaser.model import Environment
    from releaser.transport.ssh import SshTransport

    jump, targets = ssh_fleet.addresses[12], ssh_fleet.addresses[:6]
    known = known_hosts_without(ssh_fleet, tmp_path, jump)
    before = known.read_text()
    config = proxy_jump(ssh_fleet, tmp_path, jump, targets)
    real_open, together = Connection.open, threading.Barrier(len(targets), timeout=20)

    def open_together(connection):
        if isinstance(connection.gateway, Connection):  # a target: its keys, and its hop's, are looked up by now
            together.wait()
        return real_open(connection)

    monkeypatch.setattr(Connection, "open", open_together)
    ssh = ssh_fleet.options(known_hosts=str(known), config_file=str(config), host_key_policy="accept-new")
    hosts = tuple(Host(f"h{i}", address, "/tmp", ssh=ssh) for i, address in enumerate(targets))
    env = Environment("e", "ssh", "app", hosts, parallel=len(targets), handshakes=len(targets))
    events: list[tuple[str, str]] = []
    with Fleet(env, SshTransport(env, lambda kind, message, data: events.append((kind, message)))) as fleet:
        assert fleet.open(hosts) == {}
    recorded = [line for line in known.read_text().splitlines() if line.startswith(f"[{jump}]:{ssh_fleet.port} ")]
    assert len(recorded) == 1 and known.read_text().startswith(before)
    assert [kind for kind, _ in events] == ["hostkey.accepted"]
    assert f"of jump host [{jump}]:{ssh_fleet.port}" in events[0][1]


def test_a_key_another_host_recorded_meanwhile_is_not_recorded_again_nor_a_different_one_accepted(tmp_path):
    """accept-new decides on what known_hosts holds when the key is offered, hashed names too: the
    same key is taken as it is, another one of that type is a changed key."""
    import paramiko

    from releaser.transport.ssh import _HostKeyPolicy

    def ed25519(byte: int) -> paramiko.PKey:
        blob = paramiko.Message()
        blob.add_string("ssh-ed25519")
        blob.add_string(bytes([byte]) * 32)
        return paramiko.Ed25519Key(data=blob.asbytes())

    name, recorded, other = "[10.0.0.9]:2222", ed25519(1), ed25519(2)
    known = tmp_path / "known_hosts"
    known.write_text(f"{paramiko.HostKeys.hash_host(name)} ssh-ed25519 {recorded.get_base64()}\n")
    before, events = known.read_text(), []
    policy = _HostKeyPolicy(Host("h", "10.0.0.9", "/tmp"), known, True, lambda *event: events.append(event), hop=True)
    client = paramiko.SSHClient()
    policy.missing_host_key(client, name, recorded)
    assert client.get_host_keys().lookup(name)["ssh-ed25519"] == recorded
    with pytest.raises(paramiko.BadHostKeyException):
        policy.missing_host_key(paramiko.SSHClient(), name, other)
    assert known.read_text() == before and events == []


def test_hooks_listed_under_sudo_run_through_sudo(ssh_project):
    project = ssh_project
    playbook = project.dir / "playbooks" / "app.yaml"
    playbook.write_text(
        playbook.read_text()
        .replace("keep_releases: 3\n", "keep_releases: 3\nsudo: [restart]\n")
        .replace(
            '    echo "$RELEASER_RELEASE" > "$RELEASER_ROOT/shared/running"\n',
            '    echo "$RELEASER_RELEASE" > "$RELEASER_ROOT/shared/running"\n'
            '    echo "${SUDO_COMMAND:-none}" > "$RELEASER_ROOT/shared/sudo"\n',
        )
    )
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    assert "bash" in (project.dir / "hosts" / "dev-1" / "shared" / "sudo").read_text()


def test_a_directory_another_session_made_meanwhile_is_no_failure():
    """Two hosts sharing a disk make the same parent at the same moment: SFTP's mkdir then fails
    with its generic "Failure", although the directory is there."""
    import stat as stat_module
    from types import SimpleNamespace

    from releaser.transport.ssh import _sftp_makedirs

    made: set[str] = set()

    class RacingSftp:
        def stat(self, path):
            if path not in made:
                made.add(path)  # the other session makes it right after this look
                raise FileNotFoundError(path)
            return SimpleNamespace(st_mode=stat_module.S_IFDIR | 0o755)

        def mkdir(self, path):
            raise OSError("Failure")

    _sftp_makedirs(RacingSftp(), "/srv/shop/.releaser")  # no exception
    assert made == {"/srv", "/srv/shop", "/srv/shop/.releaser"}


def test_a_fleet_of_a_thousand_hosts_has_room_for_its_connections():
    """One connection per host stays open for a stage: the soft limit of open files is raised
    (within the hard one) before a large fleet's connections run into it."""
    import resource

    from releaser.model import Environment, SshOptions
    from releaser.transport.ssh import SshTransport

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"the hard limit of open files here ({hard}) is below what the test needs")
    hosts = tuple(Host(f"h{i}", f"10.0.{i // 250}.{i % 250 + 1}", "/srv/app", ssh=SshOptions()) for i in range(1000))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
        SshTransport(Environment("prod", "ssh", "app", hosts))
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 1000
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_paramiko_never_prints_its_tracebacks_to_the_user():
    """A handshake an sshd drops is logged by paramiko with a traceback; Python's last-resort
    handler would print it between releaser's own lines (a process of its own: pytest's
    logging handlers would hide it here)."""
    import subprocess
    import sys

    said = subprocess.run(
        [
            sys.executable,
            "-c",
            "import logging, releaser.transport.ssh; "
            "logging.getLogger('paramiko.transport').error('Exception (client): Error reading SSH protocol banner')",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert said.stderr == ""
