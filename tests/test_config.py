"""Bad configuration: every kind is reported with file, line and key, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from releaser.config import load_config
from releaser.errors import ConfigError
from releaser.schema import format_duration, parse_duration, parse_percent
from tests.harness.configs import CHECKS, CONFIG, write_project

# prod with a router and a gray stage by users (RULE), as one edit of CONFIG
_ROUTED_GRAY = (
    "      - name: web-2\npipeline:\n  - stage: selftest\n    environment: dev\n    bake: 10s\n"
    "  - stage: gray\n    environment: prod\n    cohort: 10%"
)
_ROUTED_GRAY = (
    _ROUTED_GRAY,
    _ROUTED_GRAY.replace("pipeline:", "    router: {file: /etc/nginx/r.conf}\npipeline:") + "\n    RULE",
)
# name: (file, text to replace, replacement, expected key, words of the message, text of the line it names)
CASES = {
    "unknown top-level key": (
        "environments.yaml",
        "project: shop",
        "project: shop\nprojct: typo",
        "projct",
        "unknown key",
        "projct:",
    ),
    "unknown nested key": (
        "environments.yaml",
        "    bake: 10s",
        "    bake: 10s\n    bakes: 10s",
        "pipeline[0].bakes",
        "unknown key",
        "bakes:",
    ),
    "wrong type": (
        "environments.yaml",
        "  parallel: 10",
        "  parallel: many",
        "defaults.parallel",
        "whole number",
        "parallel: many",
    ),
    "missing required key": (
        "environments.yaml",
        "  dev:\n    playbook: app\n",
        "  dev:\n",
        "environments.dev.playbook",
        "required",
        "  dev:",
    ),
    "missing playbook file": (
        "environments.yaml",
        "  prod:\n    playbook: app",
        "  prod:\n    playbook: nope",
        "environments.prod.playbook",
        "playbooks/nope.yaml not found",
        "playbook: nope",
    ),
    "missing check set": (
        "environments.yaml",
        "checks: [basic]",
        "checks: [absent]",
        "pipeline[1].checks[0]",
        "healthchecks/absent.yaml not found",
        "checks: [absent]",
    ),
    "check set typo": (
        "environments.yaml",
        "checks: [basic]",
        "checks: [basik]",
        "pipeline[1].checks[0]",
        "not found (did you mean `basic`?)",
        "checks: [basik]",
    ),
    "bad duration": (
        "environments.yaml",
        "bake: 10s",
        "bake: 10 minutes",
        "pipeline[0].bake",
        "duration",
        "bake: 10 minutes",
    ),
    "bare number duration": ("environments.yaml", "bake: 10s", "bake: 10", "pipeline[0].bake", "duration", "bake: 10"),
    "bad percentage": (
        "environments.yaml",
        "cohort: 10%",
        "cohort: 150%",
        "pipeline[1].cohort",
        "percentage",
        "cohort: 150%",
    ),
    "waves not ending at 100%": (
        "environments.yaml",
        "waves: [50%, 100%]",
        "waves: [50%, 90%]",
        "pipeline[2].waves",
        "last wave must be 100%",
        "waves:",
    ),
    "waves shrinking": (
        "environments.yaml",
        "waves: [50%, 100%]",
        "waves: [50%, 20%, 100%]",
        "pipeline[2].waves[1]",
        "waves must grow",
        "waves:",
    ),
    "wave bake with one wave": (
        "environments.yaml",
        "waves: [50%, 100%]",
        "waves: [100%]\n    wave_bake: 5m",
        "pipeline[2].wave_bake",
        "needs two waves or more",
        "wave_bake:",
    ),
    "wave bake of nothing": (
        "environments.yaml",
        "waves: [50%, 100%]",
        "waves: [50%, 100%]\n    checks: [basic]\n    wave_bake: 0s",
        "pipeline[2].wave_bake",
        "longer than 0s",
        "wave_bake:",
    ),
    "wave bake without checks": (
        "environments.yaml",
        "waves: [50%, 100%]",
        "waves: [50%, 100%]\n    wave_bake: 5m",
        "pipeline[2].wave_bake",
        "watches the stage's checks",
        "wave_bake:",
    ),
    "duplicate host": (
        "environments.yaml",
        "      - name: web-2",
        "      - name: web-2\n      - name: web-1 ",
        "environments.prod.hosts[2]",
        "duplicate host 'web-1'",
        "- name: web-1 ",
    ),
    "stages out of order": (
        "environments.yaml",
        "  - stage: selftest\n    environment: dev\n    bake: 10s\n  - stage: gray",
        "  - stage: gray\n    environment: dev\n    bake: 10s\n  - stage: selftest",
        "pipeline[1].stage",
        "out of order",
        "- stage: selftest",
    ),
    "unknown stage": (
        "environments.yaml",
        "stage: selftest",
        "stage: smoke",
        "pipeline[0].stage",
        "expected one of selftest, test, gray, full",
        "stage: smoke",
    ),
    "unknown environment": (
        "environments.yaml",
        "    environment: dev",
        "    environment: staging",
        "pipeline[0].environment",
        "unknown environment 'staging'",
        "environment: staging",
    ),
    "cohort outside gray": (
        "environments.yaml",
        "    bake: 10s",
        "    bake: 10s\n    cohort: 5%",
        "pipeline[0].cohort",
        "only the gray stage",
        "cohort: 5%",
    ),
    "duplicate YAML key": (
        "environments.yaml",
        "  parallel: 10",
        "  parallel: 10\n  parallel: 20",
        "parallel",
        "duplicate key",
        "parallel: 20",
    ),
    "invalid YAML": ("environments.yaml", "    bake: 10s", "    bake: [10s", "", "invalid YAML", "  - stage: gray"),
    "unknown key in playbook": (
        "playbooks/app.yaml",
        "keep_releases: 4",
        "keep_releases: 4\nkeep_release: 9",
        "keep_release",
        "unknown key",
        "keep_release: 9",
    ),
    "unknown hook": (
        "playbooks/app.yaml",
        "  restart: echo restarted",
        "  restart: echo restarted\n  reboot: now",
        "hooks.reboot",
        "unknown key",
        "reboot:",
    ),
    "unknown check type": (
        "healthchecks/basic.yaml",
        "    type: http",
        "    type: ping",
        "checks[0].type",
        "expected one of",
        "type: ping",
    ),
    "unknown placeholder": (
        "healthchecks/basic.yaml",
        "{PORT}",
        "{PROT}",
        "checks[0].url",
        "unknown placeholder {PROT}",
        "url:",
    ),
    "ssh options on a local environment": (
        "environments.yaml",
        "  dev:\n    playbook: app",
        "  dev:\n    playbook: app\n    ssh: {user: deploy}",
        "environments.dev.ssh",
        "need `transport: ssh`",
        "ssh: {user",
    ),
    "bad host key policy": (
        "environments.yaml",
        "  prod:\n    playbook: app",
        "  prod:\n    transport: ssh\n    root: /srv/shop\n    ssh: {host_key_policy: yes-please}\n    playbook: app",
        "environments.prod.ssh.host_key_policy",
        "expected one of verify, accept-new",
        "ssh: {host_key_policy",
    ),
    "relative remote root": (
        "environments.yaml",
        "  prod:\n    playbook: app",
        "  prod:\n    transport: ssh\n    root: srv/shop\n    playbook: app",
        "environments.prod.root",
        "absolute path",
        "root: srv/shop",
    ),
    "adaptive bake, min above max": (
        "environments.yaml",
        "bake: 10s",
        "bake: {min: 5m, max: 1m}",
        "pipeline[0].bake",
        "min (5m) is longer than max (1m)",
        "bake: {min",
    ),
    "adaptive bake without max": (
        "environments.yaml",
        "bake: 10s",
        "bake: {min: 5m}",
        "pipeline[0].bake.max",
        "required",
        "bake: {min",
    ),
    "threshold max of NaN": (
        "healthchecks/basic.yaml",
        '    type: http\n    url: "http://{address}:{PORT}/health"',
        "    type: threshold\n    query: up\n    max: .nan",
        "checks[0].max",
        "finite number",
        "max: .nan",
    ),
    "canary bound below 1": (
        "healthchecks/basic.yaml",
        '    type: http\n    url: "http://{address}:{PORT}/health"',
        "    type: canary\n    requests: r\n    errors: e\n    bound: {errors: {ratio: 0.5}}",
        "checks[0].bound.errors.ratio",
        "at least 1",
        "bound: {errors",
    ),
    "router cookie name": (
        "environments.yaml",
        "      - name: web-2\npipeline:",
        '      - name: web-2\n    router: {file: /etc/nginx/r.conf, key: {cookie: "u;id"}}\npipeline:',
        "environments.prod.router.key.cookie",
        "a cookie name",
        "router: {file",
    ),
    "router backend not host:port": (
        "environments.yaml",
        "      - name: web-2\npipeline:",
        '      - name: web-2\n    router: {file: /etc/nginx/r.conf, backend: "{address}"}\npipeline:',
        "environments.prod.router.backend",
        "expected host:port",
        "router: {file",
    ),
    "users outside gray": (
        "environments.yaml",
        "    bake: 10s",
        "    bake: 10s\n    users: 10%",
        "pipeline[0].users",
        "only the gray stage",
        "users: 10%",
    ),
    "users without a router": (
        "environments.yaml",
        "    cohort: 10%",
        "    cohort: 10%\n    users: [1%, 10%]",
        "pipeline[1].users",
        "needs a router on prod",
        "users: [1%",
    ),
    "users step of 100%": (
        "environments.yaml",
        _ROUTED_GRAY[0],
        _ROUTED_GRAY[1].replace("RULE", "users: [10%, 100%]"),
        "pipeline[1].users[1]",
        "less than 100%",
        "users: [10%, 100%]",
    ),
    "allowed user key with a quote": (
        "environments.yaml",
        _ROUTED_GRAY[0],
        _ROUTED_GRAY[1].replace("RULE", "users: {steps: [10%], allow: [qa, 'x\"y']}"),
        "pipeline[1].users.allow[1]",
        "a user key",
        "users: {steps",
    ),
    "state URL written in the file": (
        "environments.yaml",
        "project: shop",
        'project: shop\nstate: {backend: postgresql, url: "postgresql://u:pw@db/x"}',
        "state.url",
        "named by `url_env`",
        "state: {backend",
    ),
    "state URL variable badly named": (
        "environments.yaml",
        "project: shop",
        "project: shop\nstate: {backend: postgresql, url_env: db-url}",
        "state.url_env",
        "name of an environment variable",
        "state: {backend",
    ),
    "unknown state backend": (
        "environments.yaml",
        "project: shop",
        "project: shop\nstate: {backend: mysql}",
        "state.backend",
        "expected one of sqlite, postgresql",
        "state: {backend",
    ),
    "bad host var name": (
        "environments.yaml",
        'vars: {PORT: "8080"}',
        'vars: {1PORT: "8080"}',
        "environments.prod.vars.1PORT",
        "variable names",
        "vars: {1PORT",
    ),
}


def releaser(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "releaser.cli", "-C", str(root), *args], capture_output=True, text=True, timeout=60
    )


def test_the_base_configuration_is_valid(tmp_path):
    config = load_config(write_project(tmp_path) / "environments.yaml")
    assert config.stage_names() == ["selftest", "gray", "full"]
    assert [h.name for h in config.environments["prod"].hosts] == ["web-1", "web-2"]
    assert config.stage("full").waves == (50.0, 100.0)
    assert config.environments["prod"].parallel == 10
    assert config.stage("selftest").bake == 10 and not config.stage("selftest").adaptive


def test_an_adaptive_bake_reads_min_and_max(tmp_path):
    root = write_project(tmp_path)
    (root / "environments.yaml").write_text(CONFIG.replace("bake: 10s", "bake: {min: 2m, max: 30m}"))
    spec = load_config(root / "environments.yaml").stage("selftest")
    assert spec.adaptive and (spec.bake_min, spec.bake) == (120.0, 1800.0)


@pytest.mark.real  # releaser as a subprocess: the exit code and output a user sees
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_file_line_and_key(tmp_path, case):
    file, old, new, key, words, at = CASES[case]
    root = write_project(tmp_path)
    path = root / file
    text = path.read_text()
    assert old in text, "the case must edit existing text"
    path.write_text(text.replace(old, new, 1))
    lines = path.read_text().splitlines()
    expected_line = next(i for i, line in enumerate(lines, 1) if at in line)

    proc = releaser(root, "validate", "--json")
    assert proc.returncode == 2, proc.stderr
    problems = json.loads(proc.stdout)["error"]["problems"]
    match = [p for p in problems if p["file"].endswith(file) and key in p["key"] and words in p["message"]]
    assert match, problems
    assert match[0]["line"] == expected_line, problems
    assert f"{file}:{expected_line}:" in proc.stderr

    # a command that would change state refuses as well, and nothing is written
    assert releaser(root, "release", "create", "1.0", "--artifact", str(path)).returncode == 2
    assert not (root / ".releaser").exists()


def test_every_problem_is_reported_at_once(tmp_path):
    root = write_project(tmp_path)
    text = CONFIG.replace("bake: 10s", "bake: soon").replace("cohort: 10%", "cohort: 0%")
    (root / "environments.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(root / "environments.yaml")
    keys = {p.key for p in info.value.problems}
    assert {"pipeline[0].bake", "pipeline[1].cohort"} <= keys


def test_a_problem_of_a_check_set_two_stages_share_is_reported_once(tmp_path):
    root = write_project(tmp_path)
    (root / "environments.yaml").write_text(
        CONFIG.replace("    waves: [50%, 100%]\n", "    waves: [50%, 100%]\n    checks: [basic]\n")
    )
    (root / "healthchecks" / "basic.yaml").write_text(CHECKS.replace("{PORT}", "{PROT}"))
    with pytest.raises(ConfigError) as info:
        load_config(root / "environments.yaml")
    assert len([p for p in info.value.problems if "unknown placeholder {PROT}" in p.message]) == 1


@pytest.mark.real  # releaser as a subprocess: the exit code and output a user sees
def test_missing_configuration_file(tmp_path):
    proc = releaser(tmp_path, "validate")
    assert proc.returncode == 2
    assert "environments.yaml: file not found" in proc.stderr


@pytest.mark.real  # releaser as a subprocess: the exit code and output a user sees
def test_shipped_example_and_init_scaffold_validate(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    assert releaser(repo, "-c", "environments.example.yaml", "validate").returncode == 0
    assert releaser(tmp_path / "new", "init").returncode == 2  # -C to a missing directory
    (tmp_path / "new").mkdir()
    assert releaser(tmp_path / "new", "init").returncode == 0
    assert releaser(tmp_path / "new", "validate").returncode == 0
    again = releaser(tmp_path / "new", "init")
    assert again.returncode == 2 and "already has" in again.stderr


@pytest.mark.parametrize(
    "text,seconds",
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("3d", 259200), ("1h30m", 5400), ("500ms", 0.5), ("1.5s", 1.5)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "1h 30m", "-5s", "h1", 10, None])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0%", "101%", "-1%", "ten%", "10", 10, "%"])
def test_bad_percentages(text):
    with pytest.raises(ValueError):
        parse_percent(text)


@pytest.mark.real  # releaser as a subprocess: the exit code and output a user sees
def test_init_scaffolds_a_router(tmp_path):
    """`init --router nginx`: prod behind nginx with its gray by users; the site it writes, with
    the first route, passes `nginx -t`."""
    from tests.harness.nginx import nginx_in

    root = tmp_path / "new"
    root.mkdir()
    assert releaser(root, "init", "--router", "nginx").returncode == 0
    assert releaser(root, "validate").returncode == 0
    config = load_config(root / "environments.yaml")
    assert config.environments["prod"].router.key == ("cookie", "uid") and config.stage("gray").users == (10.0,)
    nginx = nginx_in(tmp_path / "nginx", "unused")  # only its binary and a prefix of its own
    main = tmp_path / "main.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ include {root}/nginx/site.conf; }}\n"
    )
    proc = subprocess.run([nginx.binary, "-p", str(tmp_path), "-c", str(main), "-t"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.real  # releaser as a subprocess: the exit code and output a user sees
def test_defaults_set_the_transport_ssh_and_vars_of_every_environment(tmp_path):
    root = write_project(tmp_path)
    (root / "environments.yaml").write_text(
        CONFIG.replace(
            "defaults:\n",
            "defaults:\n  transport: ssh\n"
            "  root: /srv/shop\n  ssh: {user: deploy, port: 2222}\n"
            '  vars: {REGION: eu, PORT: "80"}\n',
        ).replace("  dev:\n    playbook: app\n", "  dev:\n    playbook: app\n    ssh: {port: 22}\n")
    )
    config = load_config(root / "environments.yaml")
    dev, prod = config.environments["dev"], config.environments["prod"]
    assert dev.transport == prod.transport == "ssh"
    assert (dev.hosts[0].ssh.user, dev.hosts[0].ssh.port) == ("deploy", 22)  # its own key wins, the rest is shared
    assert (prod.hosts[0].ssh.user, prod.hosts[0].ssh.port) == ("deploy", 2222)
    assert prod.hosts[0].vars == {"REGION": "eu", "PORT": "8080"} and dev.hosts[0].vars["PORT"] == "80"
    # a bad shared value is reported at its line in defaults:
    (root / "environments.yaml").write_text(CONFIG.replace("defaults:\n", "defaults:\n  transport: telnet\n"))
    proc = releaser(root, "validate", "--json")
    assert proc.returncode == 2
    lines = (root / "environments.yaml").read_text().splitlines()
    problems = json.loads(proc.stdout)["error"]["problems"]
    assert {p["line"] for p in problems if p["key"].endswith(".transport")} == {lines.index("  transport: telnet") + 1}


def test_a_webhook_may_ask_for_any_stored_event_kind(tmp_path):
    root = write_project(tmp_path)
    config = root / "environments.yaml"
    hook = "notifications:\n  webhooks:\n    - url: http://127.0.0.1:9/hook\n      events: [window.watching, {}]\n"
    config.write_text(CONFIG + hook.format("incident"))
    assert load_config(config).webhooks[0].events == ("window.watching", "incident")
    config.write_text(CONFIG + hook.format("stage.pased"))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert "notifications.webhooks[0].events[1]" in str(info.value)
    assert "got 'stage.pased' (did you mean `stage.passed`?)" in str(info.value)
    config.write_text(CONFIG + hook.format("note"))  # progress lines are never stored, never sent
    with pytest.raises(ConfigError):
        load_config(config)
