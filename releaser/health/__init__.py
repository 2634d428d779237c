"""Health checks: the check interface (base), the check types, and the gate that runs them.

A check type's module is imported when a configuration first names it: `status` reads the
configuration and should not pay for the canary judge unless the configuration has a canary."""

from __future__ import annotations

from importlib import import_module

from .base import Check, CheckResult, CheckTarget, Verdict

CHECK_TYPES = {
    "http": "HttpCheck",
    "command": "CommandCheck",
    "threshold": "ThresholdCheck",
    "canary": "CanaryCheck",
    "alertmanager": "AlertmanagerCheck",
}


def check_class(check_type: str) -> type[Check]:
    """The class of a check type named in CHECK_TYPES."""
    return getattr(import_module(f"{__name__}.{check_type}"), CHECK_TYPES[check_type])


__all__ = ["CHECK_TYPES", "Check", "CheckResult", "CheckTarget", "Verdict", "check_class"]
