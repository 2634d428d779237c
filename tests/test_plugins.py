"""Plugin families (checks, metric sources, transports, routers) share one shape: every kind
in a family's registry resolves to a subclass of the family's interface, each kind's module
imports first without a cycle, and the configuration accepts exactly the registered kinds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from releaser.config import rules
from releaser.health import CHECKS, Check
from releaser.metrics import SOURCES, MetricSource
from releaser.router import ROUTERS, Router
from releaser.transport import TRANSPORTS, Transport

FAMILIES = [(CHECKS, Check), (SOURCES, MetricSource), (TRANSPORTS, Transport), (ROUTERS, Router)]
KINDS = [(registry, base, kind) for registry, base in FAMILIES for kind in registry.names()]


@pytest.mark.parametrize(("registry", "base", "kind"), KINDS, ids=[f"{r.base}:{k}" for r, _, k in KINDS])
def test_every_registered_kind_implements_its_family(registry, base, kind):
    assert issubclass(registry.get(kind), base)


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(KeyError, match="known: nginx"):
        ROUTERS.get("haproxy")


def test_the_configuration_accepts_the_registered_transports():
    # named twice because reading a configuration must not load the transport package
    assert TRANSPORTS.names() == rules.TRANSPORTS


@pytest.mark.parametrize("module", sorted({r.module(k) for r, _, k in KINDS}))
def test_each_kind_module_imports_first_in_a_fresh_interpreter(module):
    """An import cycle between a family's package and a kind shows as an ImportError when the
    kind's module is the first one imported."""
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
