"""Durable state. `open_store` picks the backend the configuration names."""

from pathlib import Path

from .base import SCHEMA_VERSION, Store, StoreError, StoreMissing
from .sqlite import SqliteStore


def open_store(backend: str, location: Path, wait: float = 10.0, create: bool = True) -> Store:
    """Open the state; `wait` bounds how long a write waits for another process's lock;
    without `create`, a missing database raises StoreMissing instead of being made."""
    if backend == "sqlite":
        return SqliteStore(location, wait=wait, create=create)
    raise ValueError(f"unknown state backend {backend!r}")


__all__ = ["SCHEMA_VERSION", "SqliteStore", "Store", "StoreError", "StoreMissing", "open_store"]
