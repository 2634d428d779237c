"""Per-host files rendered from templates (`templates:` in a playbook): jinja2 in its sandbox
(a template is configuration, and configuration is treated as hostile), undefined names an
error rather than an empty string. A template sees the host's vars, {name, address, root},
the release and the environment; never a secret (rendered files travel in phase scripts)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

    from .model import Host, TemplateSpec


@cache
def _jinja() -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


def syntax_problem(text: str) -> tuple[int | None, str] | None:
    """(line, message) of a template jinja2 cannot read, None when it reads."""
    from jinja2 import TemplateSyntaxError

    try:
        _jinja().parse(text)
    except TemplateSyntaxError as exc:
        return exc.lineno, exc.message or "syntax error"
    return None


def render(spec: TemplateSpec, host: Host, release: str, environment: str) -> str:
    """The file for this host; ValueError names the template, the host and what is wrong."""
    from jinja2 import TemplateError

    values = {**host.template_values(), "release": release, "environment": environment}
    try:
        return _jinja().from_string(spec.text).render(values)
    except TemplateError as exc:
        raise ValueError(f"template {spec.source} for host {host.name}: {exc}") from None
