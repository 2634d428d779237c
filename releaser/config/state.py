"""The `state:` section: where the journal and state live (a SQLite file, or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from ..record import Record
from ..schema import Fields, shown
from .rules import DEFAULT_URL_ENV, STATE_BACKENDS


class StateSpec(Record, frozen=True):
    """The state's backend as written: `path` relative to the configuration's directory."""

    backend: str = "sqlite"
    path: str = ".releaser/state.db"
    wait: float = 10.0
    url_env: str = DEFAULT_URL_ENV


def read_state(top: Fields, base: Path) -> StateSpec:
    state = top.mapping("state")
    if state is None:
        return StateSpec()
    backend, state_path, url_env = "sqlite", StateSpec.path, DEFAULT_URL_ENV
    backend = state.str("backend", "sqlite", choices=STATE_BACKENDS)
    if backend == "postgresql":
        url_env = state.env_name("url_env") or DEFAULT_URL_ENV
        for key in ("url", "path"):
            if state.has(key):
                state.problem(
                    key,
                    "a PostgreSQL state is named by `url_env`, the variable holding its URL (the password stays there)",
                )
    else:
        state_path = state.str("path", state_path)
        if (base / state_path).is_dir() or state_path.endswith("/"):
            state.problem("path", f"expected the path of a database file, got the directory {shown(state_path)}")
    wait = state.duration("wait", StateSpec.wait)
    state.finish()
    return StateSpec(backend=backend, path=state_path, wait=wait, url_env=url_env)
