"""Webhook notifications, received by a real HTTP server."""

from __future__ import annotations

import os
import subprocess
import sys


def test_webhooks_tell_of_start_failure_and_rollback(project, receiver):
    secret = "T0KEN-s3cret"
    config = project.dir / "environments.yaml"
    config.write_text(
        config.read_text()
        + f"""\
notifications:
  webhooks:
    - url: {receiver.url}/json
    - url_env: TEAM_CHAT_URL
      format: slack
      events: [stage.failed, rollback.done]
    - url: {receiver.url}/broken/{secret}
"""
    )
    project.register("1.0.0")
    project.register("1.1.0", fail_on=("dev-1",))
    env = {**os.environ, "TEAM_CHAT_URL": f"{receiver.url}/slack/{secret}", "NO_COLOR": "1"}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "releaser.cli", "-C", str(project.dir), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    assert run("promote", "1.0.0").returncode == 0
    failed = run("promote", "1.1.0")
    assert failed.returncode == 1  # the broken webhook did not stop the rollback
    assert project.current("dev-1") == "1.0.0"

    kinds = [(body["kind"], body["release"]) for body in receiver.received["/json"]]
    assert kinds == [
        ("stage.started", "1.0.0"),
        ("stage.passed", "1.0.0"),
        ("stage.started", "1.1.0"),
        ("stage.failed", "1.1.0"),
        ("rollback.done", "1.1.0"),
    ]
    assert receiver.received["/json"][0]["project"] == "shop"
    slack = receiver.received[f"/slack/{secret}"]
    assert next(m["text"] for m in slack).startswith(":x: *shop* dev 1.1.0: selftest: 1.1.0 failed")
    assert len(slack) == 2
    assert len(receiver.received[f"/broken/{secret}"]) == 3 * 5  # three tries for each of five events

    history = run("history", "--json").stdout
    assert "notify.failed" in history
    assert secret not in history + failed.stderr + failed.stdout


def test_bad_webhook_configuration(project):
    config = project.dir / "environments.yaml"
    config.write_text(
        config.read_text() + "notifications:\n  webhooks:\n    - url: ftp://x\n      events: [stage.exploded]\n"
    )
    proc = project.cli("validate")
    assert proc.returncode == 2
    assert "notifications.webhooks[0].url" in proc.stderr and "notifications.webhooks[0].events[0]" in proc.stderr


def test_every_event_a_webhook_may_subscribe_to_is_journaled_somewhere():
    """The catalogue a webhook chooses from (`events:`) names only kinds some code journals:
    a kind offered but never recorded would be a chat that never hears the news."""
    import ast
    from pathlib import Path

    import releaser
    from releaser.events import Event
    from releaser.names import DEFAULT_EVENTS

    journaled = set()
    for path in Path(releaser.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "record":
                kind = node.args[0] if node.args else None
                if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
                    journaled.add(kind.value)
                elif isinstance(kind, ast.Attribute) and isinstance(kind.value, ast.Name) and kind.value.id == "Event":
                    journaled.add(Event[kind.attr].value)
    assert "rollback.incomplete" in DEFAULT_EVENTS and "bake.too_short" in DEFAULT_EVENTS
    assert set(DEFAULT_EVENTS) <= journaled, sorted(set(DEFAULT_EVENTS) - journaled)


def test_a_webhook_whose_variable_is_unset_says_so(tmp_path, monkeypatch):
    """In-process: the notifier journals the unset variable by name (not a URL library's error
    about '://?'), and `validate` warns of it before anything runs."""
    from click.testing import CliRunner

    from releaser.cli import cli
    from releaser.config import load_config
    from releaser.events import Event
    from releaser.notify import open_journal
    from releaser.store import open_store
    from tests.harness.configs import write_project

    write_project(tmp_path)
    path = tmp_path / "environments.yaml"
    hook = "notifications:\n  webhooks:\n    - {url_env: HOOK_URL, events: [stage.started]}\n"
    path.write_text(path.read_text() + hook)
    monkeypatch.delenv("HOOK_URL", raising=False)
    config = load_config(path)
    store = open_store(config, create=True)
    journal, notifier = open_journal(store, None, config)
    assert notifier is not None
    journal.record(Event.STAGE_STARTED, "selftest: promoting 1.0.0 on dev", release="1.0.0", stage="selftest")
    notifier.close()
    (failed,) = store.find_events(kind=Event.NOTIFY_FAILED)
    assert failed.message == (
        "notification of stage.started to $HOOK_URL failed: $HOOK_URL is not set where releaser runs (the "
        "webhook's url_env)"
    )
    checked = CliRunner().invoke(cli, ["-C", str(tmp_path), "validate"])
    assert checked.exit_code == 0 and "$HOOK_URL is not set here: a webhook reads its URL from it" in checked.output
