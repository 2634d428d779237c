"""What a configuration may say: the fixed choices of its keys and the shapes of its names.

One home for the rules the sections check; the project-wide names (stages, the default
configuration file, webhook events) stay in releaser/names.py."""

from __future__ import annotations

import re

from ..schema import check_text

PLAYBOOK_DIR = "playbooks"
CHECKS_DIR = "healthchecks"
HOOKS = ("prepare", "restart", "verify", "version")
STATE_BACKENDS = ("sqlite", "postgresql")
DEFAULT_URL_ENV = "RELEASER_DATABASE_URL"
WEBHOOK_FORMATS = ("json", "slack", "dingtalk", "wecom", "feishu")
ARTIFACT_MODES = ("push", "pull")
RUNTIMES = ("podman", "docker")  # container runtimes of image releases: the same CLI
RESTART_POLICIES = ("unless-stopped", "always", "on-failure", "no")
HOST_KEY_POLICIES = ("verify", "accept-new")
REPORT_LANGUAGES = ("en", "zh-CN")
MAIL_SECURITY = ("starttls", "ssl", "none")
SERVICE_TIERS = ("P1", "P2", "P3", "P4")  # incident tiers of the service report, most severe first
# the causes of a rollback that answer a fault (model.Cause.fault): what an incident's tier may match
INCIDENT_CAUSES = ("stage", "window", "alert", "abort", "manual", "signal", "resume")
# The kinds of releaser.transport.TRANSPORTS, named here because reading a configuration must
# not load the transport package (tests/test_plugins.py holds the two equal).
TRANSPORTS = ("local", "ssh")
# Keys of an environment that `defaults:` may set for every environment; `ssh` and `vars` merge
# key by key, the environment's own keys winning.
BACKUP_POLICIES = ("required", "optional")
SHARED_ENVIRONMENT_KEYS = (
    "transport",
    "playbook",
    "root",
    "ssh",
    "vars",
    "pass_env",
    "artifacts",
    "runtime",
    "secrets",
)

# Host and environment names reach shells, paths, journals and terminals: keep them plain.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
SAFE_NAME_RULE = "1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")
HOST_ADDRESS = re.compile(r"[A-Za-z0-9._:-]{1,253}|\[[0-9A-Fa-f:.]+\]")
SSH_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,31}")
JUMP = re.compile(r"(?:(?P<user>[^@\s]+)@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?")
# Image releases: an app's containers are named <name>-<release>; what `ports:` and `volumes:` hold.
CONTAINER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_PORTS = r"[0-9]{1,5}(?:-[0-9]{1,5})?"
PORT_SPEC = re.compile(rf"(?:(?:[0-9.]+|\[[0-9A-Fa-f:]+\]):)?(?:{_PORTS}:)?{_PORTS}(?:/(?:tcp|udp|sctp))?")
VOLUME_SPEC = re.compile(r"[^:\s]+:/[^:\s]*(?::[a-zA-Z,]+)?")
USER_KEY = re.compile(r"[A-Za-z0-9._@:+=/-]{1,128}")  # a key a router tells users apart by


def is_address(text: str) -> bool:
    """An e-mail address, bare or as `Name <address>`."""
    from email.utils import parseaddr  # with socket and the email package: only for configurations that mail

    return bool(ADDRESS.fullmatch(parseaddr(text)[1]))


def plain(text: str) -> bool:
    """Text without control characters or line breaks."""
    try:
        check_text(text)
    except ValueError:
        return False
    return True


def safe_name(name: str) -> bool:
    """A playbook or check set name: a plain file name (SAFE_NAME), never a path."""
    return bool(SAFE_NAME.fullmatch(name))
