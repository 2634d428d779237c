"""A small valid configuration directory (dev and prod, three stages, one check set) that the
configuration tests edit one mistake at a time."""

from __future__ import annotations

from pathlib import Path

CONFIG = """\
project: shop
defaults:
  parallel: 10
environments:
  dev:
    playbook: app
    hosts: [dev-1]
  prod:
    playbook: app
    vars: {PORT: "8080"}
    hosts:
      - name: web-1
      - name: web-2
pipeline:
  - stage: selftest
    environment: dev
    bake: 10s
  - stage: gray
    environment: prod
    cohort: 10%
    checks: [basic]
  - stage: full
    environment: prod
    waves: [50%, 100%]
"""

PLAYBOOK = """\
keep_releases: 4
hooks:
  restart: echo restarted
"""

CHECKS = """\
checks:
  - name: health
    type: http
    url: "http://{address}:{PORT}/health"
"""


def write_project(root: Path) -> Path:
    (root / "playbooks").mkdir(parents=True)
    (root / "healthchecks").mkdir()
    (root / "environments.yaml").write_text(CONFIG)
    (root / "playbooks" / "app.yaml").write_text(PLAYBOOK)
    (root / "healthchecks" / "basic.yaml").write_text(CHECKS)
    return root
