"""healthchecks/NAME.yaml: a named set of checks a stage bakes with. Each check's kind (the
health registry) reads its own keys; the set checks names and per-environment templates."""

from __future__ import annotations

from ..errors import ConfigError
from ..health import CHECKS, Check
from ..model import Environment
from ..schema import Fields, did_you_mean, shown
from ..yamlsrc import load_yaml
from .context import Context, display
from .rules import CHECKS_DIR, SAFE_NAME_RULE, safe_name


def read_check_set(context: Context, name: str, line: int | None, key: str, stage: Fields) -> list[Check]:
    """The checks of a set a stage names (read once per configuration)."""
    problems = context.problems
    if name in context.check_sets:
        return context.check_sets[name] or []
    if not safe_name(name):
        problems.add(stage.file, line, key, f"a check set name is {SAFE_NAME_RULE}, got {shown(name)}")
        context.check_sets[name] = None
        return []
    path = context.base / CHECKS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = [p.stem for p in path.parent.glob("*.yaml")] if path.parent.is_dir() else []
        problems.add(stage.file, line, key, f"check set file {display(path)} not found" + did_you_mean(name, known))
        context.check_sets[name] = None
        return []
    try:
        data = load_yaml(path, display(path))
    except ConfigError as exc:
        problems.extend(exc.problems)
        context.check_sets[name] = None
        return []
    fields = Fields(data, display(path), "", problems, 1)
    fields.str("description", multiline=True)
    checks: list[Check] = []
    names: dict[str, int | None] = {}
    for item, item_line, item_key in fields.items("checks", required=True):
        check_fields = Fields(item, fields.file, item_key, problems, item_line)
        check_name = check_fields.str("name", required=True)
        check_type = check_fields.str("type", required=True, choices=CHECKS.names())
        if check_name in names:
            check_fields.problem("name", f"duplicate check {check_name!r} (first at line {names[check_name]})")
        names[check_name] = check_fields.line_of("name")
        if check_name and check_type:
            check = CHECKS.get(check_type).from_fields(check_name, check_fields)
            check.origin = check_fields  # for template errors, reported per environment
            checks.append(check)
        check_fields.finish()
    fields.finish()
    context.check_sets[name] = checks
    return checks


def check_templates(checks: list[Check], environment: Environment, stage: str) -> None:
    """What cannot work in the stage's environment (host templates that do not fill in)."""
    for check in checks:
        for key, message in check.problems_for(environment, stage):
            if check.origin is not None:
                check.origin.problem(key, f"{message} (environment {environment.name})")
