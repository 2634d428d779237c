"""The command check: a command run on every cohort host (in `current`) must exit 0.
Placeholders ({name}, {address}, {root}, vars) fill in as quoted shell words."""

from __future__ import annotations

import shlex

from ..playbook import check_script
from ..schema import Fields, render_template
from .base import Check, CheckResult, CheckTarget, Verdict


class CommandCheck(Check):
    type = "command"

    def __init__(self, name: str, command: str, timeout: float = 30.0, failure_threshold: int = 1):
        super().__init__(name, failure_threshold)
        self.command, self.timeout = command, timeout

    @classmethod
    def from_fields(cls, name: str, fields: Fields) -> CommandCheck:
        return cls(
            name,
            fields.str("command", required=True, multiline=True) or "true",
            timeout=fields.duration("timeout", 30.0),
            failure_threshold=fields.int("failure_threshold", 1, minimum=1),
        )

    def templates(self) -> dict[str, str]:
        return {"command": self.command}

    def evaluate(self, target: CheckTarget, memory: dict) -> CheckResult:
        if not target.cohort or target.fleet is None:
            return CheckResult(self.name, Verdict.INCONCLUSIVE, "no hosts to run on")
        results = target.fleet.run(
            "check",
            target.cohort,
            lambda h: check_script(h, target.release, render_template(self.command, h, shlex.quote)),
            timeout=self.timeout,
            quiet=True,
        )
        unreachable = {name: r.error for name, r in results.items() if r.exit_code is None}
        failing = {name: r.why() for name, r in results.items() if not r.ok and r.exit_code is not None}
        if failing:
            summary = f"{len(failing)}/{len(results)} hosts failed: " + "; ".join(
                f"{host}: {why}" for host, why in sorted(failing.items())[:5]
            )
            return CheckResult(self.name, Verdict.FAIL, summary, failing)
        if unreachable:
            return CheckResult(
                self.name,
                Verdict.INCONCLUSIVE,
                f"{len(unreachable)} hosts unreachable",
                unreachable,
                blind=len(unreachable) == len(results),
            )
        return CheckResult(self.name, Verdict.PASS, f"{len(results)} hosts passed")
