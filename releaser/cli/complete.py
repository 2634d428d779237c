"""Shell completion of environments and release versions: read only, never fails, never writes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..names import DEFAULT_CONFIG

if TYPE_CHECKING:
    from ..model import Config


def _completion_config(ctx: click.Context) -> Config | None:
    """The configuration the command line being completed names (-C, -c), or None."""
    from ..config import load_config

    def given(name: str):  # a global option, after the command or before it
        return ctx.params.get(name) or ctx.find_root().params.get(name)

    try:
        return load_config(Path(given("chdir") or ".") / (given("config_path") or DEFAULT_CONFIG))
    except Exception:
        return None


def complete_environments(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    config = _completion_config(ctx)
    return [name for name in (config.environments if config else ()) if name.startswith(incomplete)]


def complete_releases(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Registered releases, newest first, from the state database (read only)."""
    from ..store import open_store

    config = _completion_config(ctx)
    if config is None:
        return []
    try:
        store = open_store(config, create=False)
        try:
            versions = [r.version for r in reversed(store.list_releases())]
        finally:
            store.close()
    except Exception:
        return []
    return [v for v in versions if v.startswith(incomplete)]
