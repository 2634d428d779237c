"""The catalogue of event kinds is the only one: whatever offers kinds offers catalogued ones,
every catalogued kind is written somewhere, and the journal refuses any other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from releaser.events import Event
from releaser.journal import Journal
from releaser.names import DEFAULT_EVENTS
from releaser.notify import ICONS
from releaser.store import memory_store
from releaser.terminal import COLOURS

SOURCE = Path(__file__).resolve().parent.parent / "releaser"


@pytest.mark.parametrize(
    ("offered", "kinds"), [("webhook defaults", DEFAULT_EVENTS), ("chat icons", ICONS), ("colours", COLOURS)]
)
def test_every_kind_offered_is_in_the_catalogue(offered, kinds):
    assert all(isinstance(kind, Event) for kind in kinds), offered
    assert set(kinds) <= set(Event), sorted(set(kinds) - set(Event))


def test_every_catalogued_kind_is_written_somewhere():
    text = "".join(p.read_text() for p in SOURCE.rglob("*.py") if p.name != "events.py")
    unused = [
        kind for kind in Event if not re.search(rf"\bEvent\.{kind.name}\b", text) and f'"{kind.value}"' not in text
    ]
    assert not unused, f"catalogued but never journaled: {unused}"


def test_the_journal_refuses_an_unknown_kind():
    store = memory_store()
    journal = Journal(store)
    with pytest.raises(ValueError, match=r"rollback\.failed"):
        journal.record("rollback.failed", "a kind nobody catalogued")  # type: ignore[arg-type] - the point
    assert store.events() == []
    event = journal.record(Event.ROLLBACK_DONE, "catalogued")
    assert store.events()[0].kind == event.kind == "rollback.done"
