"""The http check: every cohort host answers a URL with the expected status, body and latency."""

from __future__ import annotations

import time

from ..fanout import fan_out
from ..model import Host
from ..schema import Fields, render_template, shown
from .base import Check, CheckResult, CheckTarget, Verdict


class HttpCheck(Check):
    type = "http"

    def __init__(
        self,
        name: str,
        url: str,
        expect_status: tuple[int, ...] = (200,),
        body_contains: str | None = None,
        max_latency: float | None = None,
        timeout: float = 5.0,
        failure_threshold: int = 1,
    ):
        super().__init__(name, failure_threshold)
        self.url = url
        self.expect_status = expect_status
        self.body_contains = body_contains
        self.max_latency = max_latency
        self.timeout = timeout

    @classmethod
    def from_fields(cls, name: str, fields: Fields) -> HttpCheck:
        url = fields.str("url", required=True) or ""
        statuses = []
        for item, line, path in fields.items("expect_status") or []:
            if isinstance(item, bool) or not isinstance(item, int) or not 100 <= item <= 599:
                fields.problems.add(fields.file, line, path, f"expected an HTTP status code, got {shown(item)}")
            else:
                statuses.append(item)
        return cls(
            name,
            url,
            expect_status=tuple(statuses) or (200,),
            body_contains=fields.str("body_contains"),
            max_latency=fields.duration("max_latency"),
            timeout=fields.duration("timeout", 5.0),
            failure_threshold=fields.int("failure_threshold", 1, minimum=1),
        )

    def templates(self) -> dict[str, str]:
        return {"url": self.url}

    def _probe(self, host: Host) -> str | None:
        """None when healthy, else what was wrong."""
        import requests  # here, not at import: commands that check nothing start faster

        url = render_template(self.url, host)
        started = time.monotonic()
        try:
            response = requests.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            return f"{url}: {type(exc).__name__}"
        latency = time.monotonic() - started
        if response.status_code not in self.expect_status:
            return f"{url}: status {response.status_code}"
        if self.body_contains is not None and self.body_contains not in response.text:
            return f"{url}: body lacks {self.body_contains!r}"
        if self.max_latency is not None and latency > self.max_latency:
            return f"{url}: {latency * 1000:.0f} ms > {self.max_latency * 1000:.0f} ms"
        return None

    def evaluate(self, target: CheckTarget, memory: dict) -> CheckResult:
        if not target.cohort:
            return CheckResult(self.name, Verdict.INCONCLUSIVE, "no hosts to check")
        results = fan_out(target.cohort, self._probe, parallel=16)
        failures = {r.item.name: r.value or str(r.error) for r in results if r.value or r.error}
        if failures:
            summary = f"{len(failures)}/{len(target.cohort)} hosts unhealthy: " + "; ".join(
                f"{host}: {why}" for host, why in sorted(failures.items())[:5]
            )
            return CheckResult(self.name, Verdict.FAIL, summary, failures)
        return CheckResult(self.name, Verdict.PASS, f"{len(target.cohort)} hosts healthy")
