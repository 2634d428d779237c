"""Health checks: the check interface, the check types, and the gate that runs them."""

from .base import Check, CheckResult, CheckTarget, Verdict
from .http import HttpCheck

CHECK_TYPES: dict[str, type[Check]] = {HttpCheck.type: HttpCheck}

__all__ = ["CHECK_TYPES", "Check", "CheckResult", "CheckTarget", "Verdict"]
