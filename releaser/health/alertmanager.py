"""The alertmanager check: no alert matching the environment's labels is firing.

It asks Alertmanager (API v2) for the active alerts, not silenced nor inhibited, that match its
label matchers. A firing alert fails it. An Alertmanager that cannot be read is never taken for
a quiet one: the check is then inconclusive and blind, and a bake that ends blind fails (or
holds, as the stage says), as every check that cannot see does.
"""

from __future__ import annotations

from ..metrics.selector import Selector, read_selector
from ..schema import Fields, shown
from .base import Check, CheckResult, CheckTarget, Verdict


class AlertmanagerCheck(Check):
    type = "alertmanager"

    def __init__(
        self,
        name: str,
        url: str,
        match: Selector,
        bearer_env: str | None = None,
        timeout: float = 5.0,
        failure_threshold: int = 1,
    ):
        super().__init__(name, failure_threshold)
        self.url, self.match, self.bearer_env, self.timeout = url.rstrip("/"), match, bearer_env, timeout

    @classmethod
    def from_fields(cls, name: str, fields: Fields) -> AlertmanagerCheck:
        url = fields.str("url", required=True) or ""
        if url and not url.startswith(("http://", "https://")):
            fields.problem("url", f"expected Alertmanager's http:// or https:// URL, got {shown(url)}")
        match = read_selector(fields, "match", required=True, named=False)
        if match is not None and not match.matchers:
            fields.problem("match", "give at least one label matcher: an empty one would match every alert")
        return cls(
            name,
            url,
            match or Selector("", ()),
            bearer_env=fields.env_name("bearer_env"),
            timeout=fields.duration("timeout", 5.0),
            failure_threshold=fields.int("failure_threshold", 1, minimum=1),
        )

    def evaluate(self, target: CheckTarget, memory: dict) -> CheckResult:
        import requests

        from .. import secrets

        wanted = ", ".join(f'{label}{op}"{value}"' for label, op, value in self.match.matchers)
        headers = {"Authorization": f"Bearer {secrets.read_env(self.bearer_env)}"} if self.bearer_env else {}
        try:
            response = requests.get(
                f"{self.url}/api/v2/alerts",
                timeout=self.timeout,
                headers=headers,
                params=[
                    ("active", "true"),
                    ("silenced", "false"),
                    ("inhibited", "false"),
                    *(("filter", f'{label}{op}"{value}"') for label, op, value in self.match.matchers),
                ],
            )
            response.raise_for_status()
            alerts = response.json()
            if not isinstance(alerts, list):
                raise ValueError("not a list of alerts")
        except (requests.RequestException, ValueError) as exc:
            return CheckResult(
                self.name, Verdict.INCONCLUSIVE, secrets.scrub(f"cannot read Alertmanager: {exc}"), blind=True
            )
        firing = [
            a
            for a in alerts
            if isinstance(a, dict) and isinstance(a.get("labels"), dict) and self.match.matches_labels(a["labels"])
        ]
        if not firing:
            return CheckResult(self.name, Verdict.PASS, f"no alert matching {{{wanted}}} is firing")
        shown_alerts = "; ".join(
            f"{a['labels'].get('alertname', 'alert')} since {a.get('startsAt', '?')}"
            + (f": {a.get('annotations', {}).get('summary')}" if a.get("annotations", {}).get("summary") else "")
            for a in firing[:3]
        )
        return CheckResult(self.name, Verdict.FAIL, f"{len(firing)} alert(s) firing: {shown_alerts}")
