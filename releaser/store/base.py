"""What every part of the store shares without loading SQL: the schema's version and the errors.

The store itself is store.sql.Store, one class for both backends (store.sqlite, store.postgresql).
"""

from __future__ import annotations

from ..errors import NeedsHuman

SCHEMA_VERSION = 12


class StoreError(NeedsHuman):
    """The state cannot be used (locked past the wait, damaged, of a newer schema): one sentence, exit 4."""


class StoreMissing(StoreError):
    """No state database where the configuration says (a command that only looks creates none)."""

    def __init__(self, path: object):
        super().__init__(
            f"there is no state database at {path}: nothing has been recorded here yet, or it was lost; if hosts "
            "already run releases, `releaser state rebuild` rebuilds what they run from their own records"
        )
        self.path = path
