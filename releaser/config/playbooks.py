"""playbooks/NAME.yaml: the hooks that install, switch and check a release on a host."""

from __future__ import annotations

from ..errors import ConfigError
from ..model import ContainerSpec, MigrateSpec, Playbook, ServiceSpec, TemplateSpec
from ..schema import Fields, check_text, shown
from ..yamlsrc import load_yaml
from .context import Context, display
from .rules import (
    CONTAINER_NAME,
    HOOKS,
    PLAYBOOK_DIR,
    PORT_SPEC,
    RESTART_POLICIES,
    SAFE_NAME_RULE,
    VOLUME_SPEC,
    plain,
    safe_name,
)


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
    templates = _read_templates(fields, context)
    container = _read_container(fields, name)
    service = _read_service(fields, name)
    migrate = _read_migrate(fields)
    if container is not None and service is not None:
        fields.problem("service", "a playbook runs a container (image releases) or a service (tarballs), not both")
    runs = "container" if container is not None else "service" if service is not None else None
    for hook in ("restart", "version"):
        if runs and hook in hooks and hook_fields is not None:
            hook_fields.problem(
                hook,
                f"with `{runs}:` releaser starts each release's {runs} and asks it what it "
                f"serves; drop the {hook} hook (prepare and verify hooks still run)",
            )
    fields.finish()
    context.playbooks[name] = Playbook(
        name=name,
        file=display(path),
        hooks=hooks,
        shared=tuple(shared),
        keep_releases=keep,
        sudo=tuple(sudo),
        container=container,
        service=service,
        templates=templates,
        migrate=migrate,
    )
    return context.playbooks[name]


def _read_templates(parent: Fields, context: Context) -> tuple[TemplateSpec, ...]:
    """`templates: {PATH_IN_RELEASE: TEMPLATE_FILE}`: each template read and parsed now, so that a
    syntax error is reported at its own file and line."""
    section = parent.mapping("templates")
    if section is None:
        return ()
    from ..templates import syntax_problem

    found = []
    for path in [str(key) for key in section.data]:
        source = section.str(path, required=True)
        if not path or path.startswith("/") or ".." in path.split("/") or not plain(path):
            section.problem(path, f"expected a relative path inside the release, got {shown(path)}")
            continue
        if source is None:
            continue
        file = context.base / source
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            section.problem(path, f"template {display(file)} cannot be read: {getattr(exc, 'strerror', None) or exc}")
            continue
        problem = syntax_problem(text)
        if problem is not None:
            context.problems.add(display(file), problem[0], "", f"template syntax: {problem[1]}")
            continue
        found.append(TemplateSpec(path=path, source=display(file), text=text))
    return tuple(found)


def _read_migrate(parent: Fields) -> MigrateSpec | None:
    """`migrate:`: the app's own migration tool (model.MigrateSpec); `current` and `up` are needed."""
    fields = parent.mapping("migrate")
    if fields is None:
        return None
    spec = MigrateSpec(
        current=fields.str("current", "", required=True, multiline=True) or "",
        up=fields.str("up", "", required=True, multiline=True) or "",
        down=fields.str("down", multiline=True),
        backup=fields.str("backup", multiline=True),
        restore=fields.str("restore", multiline=True),
        verify=fields.str("verify", multiline=True),
        timeout=fields.duration("timeout", MigrateSpec.timeout),
    )
    if (spec.restore is None) != (spec.verify is None):
        fields.problem(
            "restore" if spec.restore is None else "verify",
            "a restore drill needs both `restore` (the backup into a scratch database) and `verify` (that it is sound)",
        )
    if spec.restore is not None and spec.backup is None:
        fields.problem("restore", "`restore` restores what `backup` writes: add the `backup` command")
    fields.finish()
    return spec


def _read_service(parent: Fields, playbook: str) -> ServiceSpec | None:
    """`service:`: the process releaser runs for each tarball release (model.ServiceSpec)."""
    fields = parent.mapping("service")
    if fields is None:
        return None
    default_name = playbook if CONTAINER_NAME.fullmatch(playbook) else "app"
    name = fields.str("name", default_name)
    if not CONTAINER_NAME.fullmatch(name or ""):
        fields.problem("name", f"a service name is lower-case letters, digits, '.', '_' or '-', got {shown(name)}")
        name = default_name
    spec = ServiceSpec(
        name=name,
        command=fields.str("command", "", required=True),
        ready=fields.str("ready"),
        ready_timeout=fields.duration("ready_timeout", 60.0),
        stop_timeout=fields.duration("stop_timeout", 20.0),
    )
    if spec.ready and not spec.ready.startswith(("http://", "https://")):
        fields.problem("ready", f"expected an http:// or https:// URL, got {shown(spec.ready)}")
    fields.finish()
    return spec


def _read_container(parent: Fields, playbook: str) -> ContainerSpec | None:
    """`container:`: how an image release runs on a host (model.ContainerSpec)."""
    fields = parent.mapping("container")
    if fields is None:
        return None
    default_name = playbook.lower() if CONTAINER_NAME.fullmatch(playbook.lower()) else "app"
    name = fields.str("name", default_name)
    if not CONTAINER_NAME.fullmatch(name or ""):
        fields.problem("name", f"a container name is lower-case letters, digits, '.', '_' or '-', got {shown(name)}")
        name = default_name
    env = fields.scalar_map("env")
    spec = ContainerSpec(
        name=name,
        network=fields.str("network", "host"),
        ports=tuple(_words(fields, "ports", PORT_SPEC, "a port to publish like 8080:80 or 127.0.0.1:8080:80")),
        env=env,
        volumes=tuple(_words(fields, "volumes", VOLUME_SPEC, "a volume like /srv/shop/data:/data or name:/data:ro")),
        command=tuple(_words(fields, "command", None, "an argument")),
        ready=fields.str("ready"),
        ready_timeout=fields.duration("ready_timeout", 60.0),
        stop_timeout=fields.duration("stop_timeout", 20.0),
        restart=fields.str("restart", "unless-stopped", choices=RESTART_POLICIES) or "unless-stopped",
    )
    if spec.network and not CONTAINER_NAME.fullmatch(spec.network):
        fields.problem("network", f"expected host or the name of a network, got {shown(spec.network)}")
    if spec.ready and not spec.ready.startswith(("http://", "https://")):
        fields.problem("ready", f"expected an http:// or https:// URL, got {shown(spec.ready)}")
    if spec.ports and spec.network == "host":
        fields.problem("ports", "a container on the host network uses the host's ports: drop `ports` or set `network`")
    fields.finish()
    return spec


def _words(fields: Fields, key: str, shape, what: str) -> list[str]:
    """A list of plain strings (each passed to the runtime as one argument)."""
    words = []
    for item, line, path in fields.items(key):
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            fields.problems.add(fields.file, line, path, f"expected {what}, got {shown(item)}")
            continue
        text = str(item)
        try:
            check_text(text)
        except ValueError as exc:
            fields.problems.add(fields.file, line, path, str(exc))
            continue
        if shape is not None and not shape.fullmatch(text):
            fields.problems.add(fields.file, line, path, f"expected {what}, got {shown(text)}")
            continue
        words.append(text)
    return words
