"""Durable state. `open_store` picks the backend the configuration names."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import SCHEMA_VERSION, StoreError, StoreMissing
from .sql import Store
from .sqlite import SqliteStore

if TYPE_CHECKING:
    from ..model import Config


def open_store(config: Config, create: bool = True) -> Store:
    """The state the configuration names. Without `create`, a state with nothing recorded yet
    raises StoreMissing instead of being made; writes wait `state.wait` for another process."""
    if config.state_backend == "postgresql":
        return open_postgres(config.state_url_env, config.state_wait, create)
    return SqliteStore(config.state_path, wait=config.state_wait, create=create)


def open_postgres(url_env: str, wait: float, create: bool = True) -> Store:
    """The PostgreSQL state whose URL the variable `url_env` holds (its password a secret from here on)."""
    from .. import secrets
    from .postgresql import PostgresStore

    return PostgresStore(secrets.read_env(url_env), wait, create=create, variable=f"${url_env}")


def memory_store() -> Store:
    """An empty state that lives only in this process (a command that looks where nothing is recorded)."""
    return SqliteStore(Path(":memory:"))


__all__ = [
    "SCHEMA_VERSION",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreMissing",
    "memory_store",
    "open_postgres",
    "open_store",
]
