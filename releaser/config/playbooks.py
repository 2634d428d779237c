"""playbooks/NAME.yaml: the hooks that install, switch and check a release on a host."""

from __future__ import annotations

from ..errors import ConfigError
from ..model import Playbook
from ..schema import Fields, shown
from ..yamlsrc import load_yaml
from .context import Context, display
from .rules import HOOKS, PLAYBOOK_DIR, SAFE_NAME_RULE, safe_name


def read_playbook(context: Context, name: str, referrer: Fields) -> Playbook | None:
    """The playbook an environment names (read once per configuration)."""
    if name in context.playbooks:
        return context.playbooks[name]
    if not safe_name(name):
        referrer.problem("playbook", f"a playbook name is {SAFE_NAME_RULE}, got {shown(name)}")
        return None
    path = context.base / PLAYBOOK_DIR / f"{name}.yaml"
    if not path.is_file():
        referrer.problem("playbook", f"playbook file {display(path)} not found")
        return None
    try:
        data = load_yaml(path, display(path))
    except ConfigError as exc:
        context.problems.extend(exc.problems)
        return None
    problems = context.problems
    fields = Fields(data, display(path), "", problems, 1)
    fields.str("description", multiline=True)
    keep = fields.int("keep_releases", 5, minimum=2)
    shared = []
    for item, line, key in fields.items("shared"):
        if not isinstance(item, str) or not item or item.startswith("/") or ".." in item.split("/"):
            problems.add(fields.file, line, key, f"expected a relative path inside the release, got {shown(item)}")
        else:
            shared.append(item.rstrip("/"))
    sudo = []
    for item, line, key in fields.items("sudo"):
        if item not in HOOKS:
            problems.add(fields.file, line, key, f"expected a hook name ({', '.join(HOOKS)}), got {shown(item)}")
        else:
            sudo.append(item)
    hooks: dict[str, str] = {}
    hook_fields = fields.mapping("hooks")
    if hook_fields is not None:
        for hook in HOOKS:
            value = hook_fields.str(hook, multiline=True)
            if value:
                hooks[hook] = value
        hook_fields.finish()
    fields.finish()
    context.playbooks[name] = Playbook(
        name=name, file=display(path), hooks=hooks, shared=tuple(shared), keep_releases=keep, sudo=tuple(sudo)
    )
    return context.playbooks[name]
