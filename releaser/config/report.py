"""The `report:` section: when the effect report is written, what it measures, how it is
mailed or posted."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..metrics.selector import read_selector
from ..model import Environment, MailSpec, ReportSpec, Selector, ServiceReportSpec, StageSpec, TierRule, Webhook
from ..schema import Fields, known_zone, shown
from .notify import read_webhook_format, read_webhook_url
from .rules import INCIDENT_CAUSES, MAIL_SECURITY, REPORT_LANGUAGES, SERVICE_TIERS, is_address


def read_report(top: Fields, environments: dict[str, Environment], pipeline: list[StageSpec], base: Path) -> ReportSpec:
    """The `report:` section; every key has a default, so a pipeline always schedules reports."""
    environment = environments.get(pipeline[-1].environment) if pipeline else None
    fields = top.mapping("report")
    if fields is None:
        return ReportSpec()
    metrics = fields.mapping("metrics") or Fields({}, fields.file, fields.key_path("metrics"), fields.problems)
    features: dict[str, Selector] = {}
    feature_section = fields.mapping("features")
    if feature_section is not None:
        for name in list(feature_section.data):
            selector = read_selector(feature_section, str(name))
            if selector is not None:
                features[str(name)] = selector
        feature_section.finish()
    spec = ReportSpec(
        delay=fields.duration("delay", ReportSpec.delay),
        window=fields.duration("window", ReportSpec.window),
        step=fields.duration("step"),
        language=fields.str("language", "en", choices=REPORT_LANGUAGES) or "en",
        timezone=_read_timezone(fields),
        rollback_sla=fields.duration("rollback_sla", ReportSpec.rollback_sla),
        requests=read_selector(metrics, "requests"),
        errors=read_selector(metrics, "errors"),
        latency=metrics.str("latency"),
        cpu=read_selector(metrics, "cpu"),
        features=features,
        mail=_read_mail(fields, base),
        webhook=_read_report_webhook(fields),
        service=_read_service(fields, environments, pipeline),
    )
    if spec.latency is not None and not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", spec.latency):
        metrics.problem("latency", f"expected the name of a histogram, got {shown(spec.latency)}")
    if spec.window <= 0:
        fields.problem("window", "must be longer than 0s")
    if spec.step is not None and not 0 < spec.step <= spec.window:
        fields.problem("step", "must be longer than 0s and at most the window")
    measured = spec.requests or spec.errors or spec.latency or spec.cpu or spec.features
    if spec.errors and not spec.requests:
        metrics.problem("errors", "an error rate needs `requests` too")
    if environment is not None and measured and environment.metrics is None:
        fields.problem("metrics", f"environment {environment.name} (the last stage's) has no `metrics:` source")
    if environment is not None and spec.mail is not None and not environment.report_to:
        fields.problem("mail", f"environment {environment.name} (the last stage's) names no `report_to` recipients")
    metrics.finish()
    fields.finish()
    return spec


def _read_service(
    parent: Fields, environments: dict[str, Environment], pipeline: list[StageSpec]
) -> ServiceReportSpec | None:
    """`report.service`: the monthly service report's schedule, availability target and incident tiers."""
    fields = parent.mapping("service")
    if fields is None:
        return None
    target = fields.percent("availability_target", 99.9)
    if target is not None and target >= 100:
        fields.problem("availability_target", f"must be below 100% (100% leaves no error budget), got {target:g}%")
    tiers = []
    section = fields.mapping("tiers")
    for name in list(section.data) if section else []:
        rule = section.mapping(str(name)) if section else None
        if str(name) not in SERVICE_TIERS and section:
            section.problem(str(name), f"expected a tier {', '.join(SERVICE_TIERS)}, got {shown(str(name))}")
        if rule is None:
            continue
        tiers.append(
            TierRule(
                str(name),
                causes=_choices(rule, "causes", INCIDENT_CAUSES, "a rollback's cause"),
                environments=_choices(rule, "environments", tuple(environments), "an environment"),
                stages=_choices(rule, "stages", tuple(s.name for s in pipeline), "a stage"),
                longer_than=rule.duration("longer_than"),
            )
        )
        rule.finish()
    if section:
        section.finish()
    spec = ServiceReportSpec(
        send=fields.bool("send"),
        day=fields.int("day", 1, minimum=1, maximum=28),
        availability_target=(target if target is not None and target < 100 else 99.9) / 100,
        tiers=tuple(sorted(tiers, key=lambda t: SERVICE_TIERS.index(t.tier) if t.tier in SERVICE_TIERS else 9)),
    )
    fields.finish()
    return spec


def _choices(fields: Fields, key: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A list of names, each one of `known`; another is a problem at its line."""
    found = []
    for value, line, path in fields.items(key):
        if str(value) not in known:
            fields.problems.add(
                fields.file, line, path, f"expected {what} ({', '.join(known)}), got {shown(str(value))}"
            )
        else:
            found.append(str(value))
    return tuple(found)


def _read_timezone(fields: Fields) -> str | None:
    """`report.timezone`: an IANA zone name that this machine's zone database knows."""
    name = fields.str("timezone")
    if name is None:
        return None
    if not known_zone(name):
        fields.problem("timezone", f"unknown time zone {shown(name)} (expected a name such as Asia/Shanghai or UTC)")
        return None
    return name


def _read_mail(parent: Fields, base: Path) -> MailSpec | None:
    fields = parent.mapping("mail")
    if fields is None:
        return None
    server = fields.str("smtp", required=True) or ""
    if server and not re.fullmatch(r"[A-Za-z0-9._-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?", server):
        fields.problem("smtp", f"expected host or host:port, got {shown(server)}")
        server = ""
    security = fields.str("security", "starttls", choices=MAIL_SECURITY) or "starttls"
    host, _, port_text = server.rpartition(":") if ":" in server else (server, "", "")
    port = {"ssl": 465, "starttls": 587, "none": 25}[security]
    if port_text:
        if port_text.isdigit() and 0 < int(port_text) < 65536:
            port = int(port_text)
        else:
            fields.problem("smtp", f"expected host or host:port, got {shown(server)}")
    sender = fields.str("from", required=True) or ""
    if sender and not is_address(sender):
        fields.problem("from", f"expected an e-mail address, got {shown(sender)}")
    ca_file = fields.str("ca_file")
    spec = MailSpec(
        host=host or server,
        port=port,
        sender=sender,
        security=security,
        username_env=fields.env_name("username_env"),
        password_env=fields.env_name("password_env"),
        ca_file=str((base / os.path.expanduser(ca_file)).resolve()) if ca_file else None,
        timeout=fields.duration("timeout", 30.0),
    )
    if (spec.username_env is None) != (spec.password_env is None):
        fields.problem("username_env", "give both username_env and password_env, or neither")
    fields.finish()
    return spec


def _read_report_webhook(parent: Fields) -> Webhook | None:
    fields = parent.mapping("webhook")
    if fields is None:
        return None
    url, url_env = read_webhook_url(fields)
    fmt, secret_env = read_webhook_format(fields)
    hook = Webhook(
        url=url,
        url_env=url_env,
        format=fmt,
        events=("report.sent",),
        timeout=fields.duration("timeout", 10.0),
        secret_env=secret_env,
    )
    fields.finish()
    return hook
