"""The `dashboard:` section: who signs in to `releaser serve` (users, their password hashes and
roles per environment), single sign-on through an authenticating proxy, and how long a sign-in
and an approval link last."""

from __future__ import annotations

import re

from ..model import Config, DashboardSpec, DashboardUser
from ..passwords import problem
from ..schema import Fields, did_you_mean, shown
from .rules import REPORT_LANGUAGES, SAFE_NAME, SAFE_NAME_RULE, is_address

ROLES = ("approver", "operator")
_HEADER = r"[A-Za-z0-9-]{1,64}"


def read_dashboard(top: Fields, environments: set[str], mails: bool) -> DashboardSpec | None:
    """`mails`: report.mail is configured, so users' `email` addresses can be written to."""
    section = top.mapping("dashboard")
    if section is None:
        return None
    url = section.str("url")
    if url is not None and not url.startswith(("http://", "https://")):
        section.problem("url", f"expected the http:// or https:// address people open, got {shown(url)}")
    users = {}
    for name, fields in section.sections("users", SAFE_NAME.fullmatch, f"a user name ({SAFE_NAME_RULE})"):
        users[name] = _read_user(name, fields, environments, mails)
    header, proxies, proxy_secret_env = _read_proxy(section)
    if not users:
        section.problem("users", "name at least one user (`users: {alice: {password: ..., approver: [prod]}}`)")
    elif header is None and not any(user.password for user in users.values()):
        section.problem("users", "no user can sign in: give one a `password` hash, or sign-in through `proxy`")
    spec = DashboardSpec(
        users=users,
        url=url.rstrip("/") if url else None,
        secret_env=section.env_name("secret_env") or DashboardSpec.secret_env,
        session=section.duration("session", DashboardSpec.session),
        link_expires=section.duration("link_expires", DashboardSpec.link_expires),
        language=section.str("language", choices=REPORT_LANGUAGES),
        proxy_header=header,
        proxy_from=proxies,
        proxy_secret_env=proxy_secret_env,
    )
    section.finish()
    return spec


def _read_user(name: str, fields: Fields, environments: set[str], mails: bool) -> DashboardUser:
    password = fields.str("password")
    email = fields.str("email")
    if email is not None and not is_address(email):
        fields.problem("email", f"expected an e-mail address, got {shown(email)}")
        email = None
    elif email is not None and not mails:
        fields.problem(
            "email",
            "approval links are mailed through report.mail, which is not configured: add `report: {mail: {smtp: "
            "HOST:PORT, from: ADDRESS}}`, or remove this address",
        )
    wrong = problem(password) if password is not None else None
    if wrong:
        fields.problem("password", wrong)
        password = None
    roles = {}
    for role in ROLES:
        named = []
        for value, line, key in fields.items(role):
            if value != "*" and str(value) not in environments:
                fields.problems.add(
                    fields.file,
                    line,
                    key,
                    f"got {shown(value)}{did_you_mean(str(value), environments)}: expected an environment or *",
                )
            else:
                named.append(str(value))
        roles[role] = tuple(named)
    fields.finish()
    return DashboardUser(name=name, password=password, email=email, **roles)


def _read_proxy(section: Fields) -> tuple[str | None, tuple[str, ...], str | None]:
    """`proxy: {header: X-Forwarded-User, from: [127.0.0.1], secret_env: VAR}`: the header is
    believed only from there, and only with the secret (any process on the proxy's machine
    could send the header; only the proxy knows the secret)."""
    proxy = section.mapping("proxy")
    if proxy is None:
        return None, (), None
    import ipaddress

    header = proxy.str("header", required=True)
    if header is not None and not re.fullmatch(_HEADER, header):
        proxy.problem("header", f"expected a header name, got {shown(header)}")
    networks = []
    for value, line, key in proxy.items("from", required=True):
        try:
            networks.append(str(ipaddress.ip_network(str(value), strict=False)))
        except ValueError:
            proxy.problems.add(proxy.file, line, key, f"expected the proxy's address or network, got {shown(value)}")
    if proxy.has("from") and not networks:
        proxy.problem("from", "name the proxy's addresses: the header is believed from there only")
    secret_env = proxy.env_name("secret_env")
    if secret_env is None and not proxy.has("secret_env"):
        proxy.problem(
            "secret_env",
            "name the variable holding the secret the proxy sends in X-Releaser-Proxy (any process on the proxy's "
            "machine could send the user header; only the proxy knows the secret)",
        )
    proxy.finish()
    return header, tuple(networks), secret_env


def approvers_not_users(config: Config) -> list[tuple[str, str]]:
    """(stage, name) for each name a stage's `approvers` lists that no dashboard user has: a typo,
    or someone who may approve from a terminal only (`releaser approve`, as RELEASER_ACTOR)."""
    if config.dashboard is None:
        return []
    users = config.dashboard.users
    return [
        (stage.name, name)
        for stage in config.pipeline
        if stage.approval is not None
        for name in stage.approval.approvers
        if name not in users
    ]
