"""`releaser init`: a small working configuration to start from."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError

FILES = {
    "environments.yaml": """\
# See `releaser validate` and the documented example environments.example.yaml.
project: myapp
defaults:
  bake: 2m
  interval: 15s
environments:
  dev:
    transport: local           # each host is a directory on this machine
    playbook: app
    hosts: [dev-1]
  test:
    transport: local
    playbook: app
    hosts: [test-1]
  prod:
    transport: local
    playbook: app
    hosts: [prod-1, prod-2, prod-3, prod-4]
pipeline:
  - stage: selftest
    environment: dev
    bake: 10s
  - stage: test
    environment: test
  - stage: gray
    environment: prod
    cohort: 10%
    # checks: [basic]          # healthchecks/basic.yaml, once your app serves /health
  - stage: full
    environment: prod
    waves: [50%, 100%]
# The effect report, 3 days after full rollout, written under .releaser/reports/. Give prod a
# `metrics:` source, name your metrics here, and add `mail:` and prod's `report_to:` to mail it
# (see environments.example.yaml).
report:
  delay: 3d
  window: 3d
  language: en                 # or zh-CN
""",
    "playbooks/app.yaml": """\
# How to deploy on one host. releaser unpacks the artifact into releases/<id>, links the
# shared paths, runs `prepare` there, switches `current` atomically, then runs `restart`
# and `verify` in current/. Hooks are bash with RELEASER_ROOT, RELEASER_HOST,
# RELEASER_RELEASE, RELEASER_PHASE and the host's vars exported.
keep_releases: 5
shared: [logs]
hooks:
  prepare: |
    echo "preparing $RELEASER_RELEASE on $RELEASER_HOST"
  restart: |
    echo "restart your service here (systemctl restart myapp, ...)"
  verify: |
    test -f REVISION
""",
    "healthchecks/basic.yaml": """\
# Checks a stage can name in `checks:`. Placeholders: {name}, {address}, {root}, host vars.
checks:
  - name: health
    type: http
    url: "http://{address}:8080/health"
    expect_status: [200]
    timeout: 2s
""",
}


def scaffold(directory: Path) -> list[Path]:
    """Write the starter files; refuses to overwrite anything, and to write through a link."""
    if os.path.lexists(directory) and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    clashes = [name for name in FILES if os.path.lexists(directory / name)]
    linked = [name for name in {str(Path(n).parent) for n in FILES} - {"."} if (directory / name).is_symlink()]
    if clashes or linked:
        raise UsageError(f"{directory} already has {', '.join(sorted(clashes + linked))}; "
                         "init writes only into a fresh directory")
    written = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in FILES.items():
            path = directory / name
            path.parent.mkdir(exist_ok=True)
            with open(path, "x", encoding="utf-8") as handle:  # O_EXCL: never through a planted link
                handle.write(text)
            written.append(path)
    except OSError as exc:
        raise UsageError(f"cannot write into {directory}: {exc.strerror or exc}") from None
    return written
