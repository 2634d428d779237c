"""The `pipeline:` section: the stages in order, each with its environment, checks, bake,
cohort or waves, users (with a router) and approval."""

from __future__ import annotations

from ..health import Check
from ..model import Approval, Environment, StageSpec
from ..names import STAGE_ORDER
from ..schema import Fields, format_duration, parse_percent, shown
from .checks import check_templates, read_check_set
from .context import Context
from .rules import USER_KEY, plain


def read_pipeline(
    context: Context, top: Fields, environments: dict[str, Environment], defaults: dict
) -> list[StageSpec]:
    problems = context.problems
    stages: list[StageSpec] = []
    last_index = -1
    for item, line, key in top.items("pipeline", required=True):
        fields = Fields(item, top.file, key, problems, line)
        name = fields.str("stage", required=True, choices=STAGE_ORDER)
        env_name = fields.str("environment", required=True)
        if env_name is not None and env_name not in environments:
            fields.problem(
                "environment", f"unknown environment {env_name!r} (known: {', '.join(environments) or 'none'})"
            )
        if name in STAGE_ORDER:
            index = STAGE_ORDER.index(name)
            if index <= last_index:
                fields.problem(
                    "stage",
                    f"stage {name!r} is out of order or repeated: stages run as {' -> '.join(STAGE_ORDER)}",
                )
            last_index = max(last_index, index)
        checks: list[Check] = []
        for check_item, check_line, check_key in fields.items("checks"):
            if not isinstance(check_item, str):
                problems.add(fields.file, check_line, check_key, "expected the name of a check set")
                continue
            checks.extend(read_check_set(context, check_item, check_line, check_key, fields))
        environment = environments.get(env_name or "")
        if environment is not None:
            check_templates(checks, environment, name or "?")
        seen_checks: set[str] = set()
        for check in checks:
            if check.name in seen_checks:
                fields.problem("checks", f"two checks named {check.name!r} in one stage")
            seen_checks.add(check.name)
        cohort = 10.0
        if fields.has("cohort") and name != "gray":
            fields.problem("cohort", "only the gray stage takes a cohort")
        cohort = fields.percent("cohort", cohort)
        waves = _read_waves(fields)
        users, allow = _read_users(fields, name, environment)
        bake = read_bake(fields, defaults["bake"])
        spec = StageSpec(
            name=name or "?",
            environment=env_name or "?",
            checks=tuple(checks),
            bake_min=bake[0],
            bake=bake[1],
            interval=fields.duration("interval", defaults["interval"]),
            rollback_window=fields.duration("rollback_window", defaults["rollback_window"]),
            cohort=cohort,
            waves=waves,
            wave_bake=_read_wave_bake(fields, waves, bool(checks), bool(users)),
            max_failed_hosts=fields.int("max_failed_hosts", 0, minimum=0),
            on_inconclusive=fields.str("on_inconclusive", "fail", choices=("fail", "hold")) or "fail",
            users=users,
            allow=allow,
            approval=_read_approval(fields),
        )
        if spec.interval <= 0:
            fields.problem("interval", "must be longer than 0s")
        fields.finish()
        stages.append(spec)
    by_name = {spec.name: spec for spec in stages}
    if "gray" in by_name and "full" in by_name and by_name["gray"].environment != by_name["full"].environment:
        top.problem("pipeline", "gray and full must run on the same environment (gray is a cohort of it)")
    return stages


def read_bake(fields: Fields, default: tuple[float | None, float]) -> tuple[float | None, float]:
    """`bake: 30m` (fixed) or `bake: {min: 2m, max: 30m}` (adaptive) -> (min or None, max)."""
    section = fields.mapping("bake") if isinstance(fields.data.get("bake"), dict) else None
    if section is None:
        return None, fields.duration("bake", default[1])
    low, high = section.duration("min", 0.0), section.duration("max", None, required=True)
    section.finish()
    if high is None:
        return default
    if low > high:
        fields.problem("bake", f"min ({format_duration(low)}) is longer than max ({format_duration(high)})")
    return min(low, high), high


def _read_users(fields: Fields, stage: str | None, environment: Environment | None) -> tuple[tuple, tuple]:
    """`users: 10%`, `users: [1%, 10%]` or `users: {steps: [...], allow: [KEY, ...]}`:
    (steps, allowed keys) of a gray stage by users."""
    if not fields.has("users"):
        return (), ()
    if stage != "gray":
        fields.problem("users", "only the gray stage takes users")
        return (), ()
    if environment is not None and environment.router is None:
        fields.problem("users", f"a gray by users needs a router on {environment.name} (router: in environments)")
    problems = fields.problems
    raw = fields.data.get("users")
    section = fields.mapping("users") if isinstance(raw, dict) else None
    if section is not None:
        listed = section.items("steps", required=True)
    elif isinstance(raw, list):
        listed = fields.items("users")
    else:
        value = fields.percent("users")
        listed = [] if value is None else [(f"{value:g}%", fields.line_of("users"), fields.key_path("users"))]
    steps: list[float] = []
    for item, line, where in listed:
        try:
            value = parse_percent(item)
        except ValueError as exc:
            problems.add(fields.file, line, where, str(exc))
            continue
        if not 0 < value < 100:
            problems.add(fields.file, line, where, f"a step is more than 0% and less than 100%, got {value:g}%")
        elif steps and value <= steps[-1]:
            problems.add(fields.file, line, where, f"steps must grow: {value:g}% after {steps[-1]:g}%")
        else:
            steps.append(value)
    allow: list[str] = []
    if section is not None:
        for item, line, where in section.items("allow"):
            if not isinstance(item, (str, int)) or not USER_KEY.fullmatch(str(item)):
                problems.add(
                    fields.file,
                    line,
                    where,
                    f"a user key is 1 to 128 letters, digits or '._@:+=/-', got {shown(item)}",
                )
            else:
                allow.append(str(item))
        section.finish()
    return tuple(steps), tuple(allow)


def _read_wave_bake(fields: Fields, waves: tuple[float, ...], checks: bool, users: bool) -> float:
    """`wave_bake: 5m`: how long the checks are watched after each wave but the last."""
    length = fields.duration("wave_bake", 0.0)
    if not fields.has("wave_bake"):
        return length
    if len(waves) < 2:
        fields.problem("wave_bake", "a bake between waves needs two waves or more (waves: [25%, 100%])")
    elif not checks:
        fields.problem("wave_bake", "a bake between waves watches the stage's checks: give it `checks:`")
    elif users:
        fields.problem("wave_bake", "a stage by users sends nobody to its hosts before its steps: no wave bake there")
    elif length <= 0:
        fields.problem("wave_bake", "must be longer than 0s")
    return length


def _read_waves(fields: Fields) -> tuple[float, ...]:
    waves: list[float] = []
    for item, line, key in fields.items("waves"):
        try:
            value = parse_percent(item)
        except ValueError as exc:
            fields.problems.add(fields.file, line, key, str(exc))
            continue
        if waves and value <= waves[-1]:
            fields.problems.add(fields.file, line, key, f"waves must grow: {value:g}% after {waves[-1]:g}%")
        waves.append(value)
    if waves and waves[-1] != 100:
        fields.problem("waves", "the last wave must be 100%")
    return tuple(waves) or (100.0,)


def _read_approval(fields: Fields) -> Approval | None:
    """`approval: {required: true, approvers: [alice, bob], not_by_promoter: true}` on a stage."""
    section = fields.mapping("approval")
    if section is None:
        return None
    required = section.bool("required", True)
    approvers = []
    for name, line, key in section.items("approvers"):
        if not isinstance(name, str) or not name.strip() or not plain(name) or len(name) > 100:
            section.problems.add(section.file, line, key, f"expected a user name, got {shown(str(name))}")
        else:
            approvers.append(name.strip())
    approval = Approval(approvers=tuple(approvers), not_by_promoter=section.bool("not_by_promoter", False))
    section.finish()
    return approval if required else None
