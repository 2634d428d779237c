"""Health checks: the check interface, the check types, and the gate that runs them."""

from .base import Check, CheckResult, CheckTarget, Verdict
from .canary import CanaryCheck
from .command import CommandCheck
from .http import HttpCheck
from .threshold import ThresholdCheck

CHECK_TYPES: dict[str, type[Check]] = {cls.type: cls for cls in (HttpCheck, CommandCheck, ThresholdCheck, CanaryCheck)}

__all__ = ["CHECK_TYPES", "Check", "CheckResult", "CheckTarget", "Verdict"]
