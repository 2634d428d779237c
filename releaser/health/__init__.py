"""Health checks: the check interface (base), the check kinds, and the gate that runs them.

A kind's module is imported when a configuration first names it: `status` reads the
configuration and should not pay for the canary judge unless the configuration has a canary.
A new kind is one module here (a Check subclass reading its own keys in `from_fields`) and one
line below."""

from __future__ import annotations

from ..plugins import Kinds
from .base import Check, CheckResult, CheckTarget, Verdict

CHECKS: Kinds[Check] = Kinds(
    __name__,
    "check",
    {
        "http": "http:HttpCheck",
        "command": "command:CommandCheck",
        "threshold": "threshold:ThresholdCheck",
        "canary": "canary:CanaryCheck",
        "alertmanager": "alertmanager:AlertmanagerCheck",
    },
)

__all__ = ["CHECKS", "Check", "CheckResult", "CheckTarget", "Verdict"]
