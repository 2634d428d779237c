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


class TemplateFailed(ValueError):
    """A template that cannot be rendered for a host, at its line when jinja2 tells it."""

    def __init__(self, spec: TemplateSpec, host: Host, line: int | None, why: str):
        where = f"{spec.source}:{line}" if line else spec.source
        super().__init__(f"template {where} for host {host.name}: {why}")
        self.line, self.why = line, f"for host {host.name}: {why}"


def render(spec: TemplateSpec, host: Host, release: str, environment: str) -> str:
    """The file for this host; TemplateFailed names the template, its line, the host and what
    is wrong."""
    from jinja2 import TemplateError

    values = {**host.template_values(), "release": release, "environment": environment}
    try:
        return _jinja().from_string(spec.text).render(values)
    except TemplateError as exc:
        raise TemplateFailed(spec, host, _template_line(exc), str(exc)) from None


def _template_line(exc: BaseException) -> int | None:
    """The template's line that failed: jinja2 runs a template as code named <template>."""
    line, frame = None, exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == "<template>":
            line = frame.tb_lineno
        frame = frame.tb_next
    return line
