"""Durable state. `open_store` picks the backend the configuration names."""

from pathlib import Path

from .base import SCHEMA_VERSION, Store
from .sqlite import SqliteStore


def open_store(backend: str, location: Path) -> Store:
    if backend == "sqlite":
        return SqliteStore(location)
    raise ValueError(f"unknown state backend {backend!r}")


__all__ = ["SCHEMA_VERSION", "SqliteStore", "Store", "open_store"]
