"""The layer rules of docs/design.md, checked on every import in releaser/ (inside functions and
under TYPE_CHECKING too: a type-only import is an arrow all the same).

A module may import its own package's modules and anything in a lower layer; nothing in its own
layer (those are independent of each other) and nothing above it."""

from __future__ import annotations

import ast
from pathlib import Path

import releaser

# Top to bottom; each name is a top-level module or package of releaser.
LAYERS: list[set[str]] = [
    {"cli"},
    {"demo", "web"},
    {"scaffold", "watch"},
    {"status"},
    {"recovery", "drills"},
    {"pipeline"},
    {"rollback", "preflight", "alerts", "config", "adhoc"},
    {"database"},
    {"operation"},
    {"report", "deploy"},
    {"health", "router", "decisions", "releases", "cohort"},
    {"metrics", "fleet", "notify", "locks", "windows", "playbook", "freezes", "contracts"},
    {"chat", "containers", "services", "approvalmail"},
    {
        "fanout",
        "transport",
        "journal",
        "schema",
        "hostrecord",
        "shipped",
        "terminal",
        "images",
        "readiness",
        "appsecrets",
        "templates",
        "links",
        "passwords",
        "mailer",
        "dbschema",
    },
    {"store", "yamlsrc", "failpoints", "processes", "interrupts", "streams"},
    {"model", "errors", "names", "secrets"},
    {"record", "events", "plugins"},
]

# Lower layers whose imports are narrower than "anything below": the design's own words.
ONLY: dict[str, set[str]] = {
    "model": {"record", "events"},
    "store": {"model", "errors", "record", "events", "secrets"},  # every write is scrubbed of secrets
    "events": set(),
    "plugins": set(),
}
# Arrows that would skip the layer the design routes them through.
NEVER: dict[str, set[str]] = {
    "pipeline": {"transport"},  # hosts are reached through the fleet
    "watch": {"transport"},  # the same: through the fleet, with the operations' transports
    "health": {"fleet", "transport", "deploy"},  # checks read metrics and ask; they do not hold sessions
}

PACKAGE = Path(releaser.__file__).parent


def _imports(path: Path, module: str) -> set[str]:
    """The top-level releaser names a module imports, relative or absolute."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
                targets = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
            elif node.module:
                targets = [node.module]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        for target in targets:
            parts = target.split(".")
            if parts[0] == "releaser" and len(parts) > 1 and not parts[1].startswith("__"):  # __version__
                found.add(parts[1])
    return found


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts)] = path
    return modules


def _layer(name: str) -> int:
    return next(index for index, layer in enumerate(LAYERS) if name in layer)


def test_every_module_has_its_layer():
    names = {path.stem if path.suffix else path.name for path in PACKAGE.iterdir() if not path.name.startswith("_")}
    names = {name for name in names if (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()}
    placed = set().union(*LAYERS)
    assert names - placed == set(), "add these to LAYERS (and docs/design.md)"
    assert placed - names == set(), "gone from releaser/: remove them from LAYERS"


def test_every_arrow_points_down():
    wrong = []
    for module, path in _modules().items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] in ("__init__", "__main__"):
            continue
        own = parts[1]
        for target in sorted(_imports(path, module) - {own}):
            allowed = ONLY.get(own)
            if allowed is not None and target not in allowed:
                wrong.append(f"{module} imports releaser.{target} (releaser.{own} may import only {sorted(allowed)})")
            elif target in NEVER.get(own, set()):
                wrong.append(f"{module} imports releaser.{target} (not releaser.{own}'s to use: {sorted(NEVER[own])})")
            elif _layer(target) <= _layer(own):
                wrong.append(f"{module} imports releaser.{target}, which is not below it")
    assert not wrong, "arrows the wrong way:\n  " + "\n  ".join(wrong)


def test_the_checker_sees_every_kind_of_import(tmp_path):
    source = tmp_path / "releaser" / "health" / "probe.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import base\n"
        "from ..fleet import Fleet\n"
        "import releaser.cli\n"
        "if TYPE_CHECKING:\n"
        "    from ..pipeline import Pipeline\n"
        "def later():\n"
        "    from releaser.store import Store\n"
    )
    assert _imports(source, "releaser.health.probe") == {"health", "fleet", "cli", "pipeline", "store"}
