"""`releaser init`: a small working configuration to start from."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from .errors import UsageError

FILES = {
    "environments.yaml": """\
# A starter pipeline on this machine: six local hosts, each a directory with its own port.
# Every key is documented in environments.example.yaml beside this file (`releaser validate`
# checks this one). To go to real hosts, give an environment `transport: ssh` and addresses.
project: myapp
defaults:
  bake: 2m                     # how long each stage watches its checks
  interval: 15s
environments:
  dev:
    transport: local           # each host is a directory on this machine (hosts/<name>)
    playbook: app
    hosts:
      - {name: dev-1, vars: {PORT: "18101"}}
  test:
    transport: local
    playbook: app
    hosts:
      - {name: test-1, vars: {PORT: "18111"}}
  prod:
    transport: local
    playbook: app
    metrics:                   # where the canary reads each host's counters
      source: scrape           # each host's /metrics (or prometheus: a server's API)
      scrape_url: "http://{address}:{PORT}/metrics"
    hosts:                     # one port each: they share this machine
      - {name: prod-1, vars: {PORT: "18121"}}
      - {name: prod-2, vars: {PORT: "18122"}}
      - {name: prod-3, vars: {PORT: "18123"}}
      - {name: prod-4, vars: {PORT: "18124"}}
pipeline:
  - stage: selftest
    environment: dev
    bake: 10s
    checks: [basic]            # healthchecks/basic.yaml
  - stage: test
    environment: test
    checks: [basic]
  - stage: gray
    environment: prod
    cohort: 10%
    checks: [basic, canary]    # canary: the cohort against the rest of prod (healthchecks/canary.yaml)
    bake: {min: 2m, max: 15m}  # passes once every check decided, after 2m; undecided at 15m: fails safe
  - stage: full
    environment: prod
    waves: [50%, 100%]
    checks: [basic]
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
# and `verify` in current/. Hooks are bash with RELEASER_ROOT, RELEASER_HOST, RELEASER_ADDRESS,
# RELEASER_RELEASE, RELEASER_PHASE and the host's vars (PORT) exported.
#
# Until your app is wired in, `restart` runs a placeholder app (releaser's demo app: /health,
# /metrics, /api/...) on the host's port, so the pipeline runs as written. Replace it with your
# service's restart (systemctl restart myapp).
keep_releases: 5
shared: [logs]
hooks:
  prepare: |
    echo "preparing $RELEASER_RELEASE on $RELEASER_HOST"
  restart: |
    pidfile="$RELEASER_ROOT/shared/app.pid"
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    fi
    # A hook must return: a server runs in the background, its input and output redirected
    # (without them the phase waits for it until command_timeout).
    nohup PYTHON -m releaser.demo.app --root "$RELEASER_ROOT" --port "$PORT" \\
      </dev/null >>"$RELEASER_ROOT/shared/logs/app.log" 2>&1 &
    echo $! > "$pidfile"
  verify: |
    for _ in $(seq 1 100); do
      curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" && exit 0
      sleep 0.1
    done
    echo "nothing answered on port $PORT within 10s; the end of its log:" >&2
    tail -n 3 "$RELEASER_ROOT/shared/logs/app.log" >&2 || true
    exit 1
""",
    "healthchecks/basic.yaml": """\
# Checks a stage can name in `checks:`. Placeholders: {name}, {address}, {root}, host vars.
checks:
  - name: health
    type: http
    url: "http://{address}:{PORT}/health"     # your app's health endpoint
    expect_status: [200]
    timeout: 2s
""",
    "healthchecks/canary.yaml": """\
# The canary judge on gray: the cohort's error ratio and latency against the rest of prod, at
# the same time, from counters each host exposes (prod's `metrics:`). Name your service's own
# metrics here. It needs traffic: at about 1 request a second per host a good release is shown
# no worse within minutes; with none (the placeholder app gets no requests) it cannot decide,
# says so at its first look, and the stage fails safe when the bake ends. If every look says
# the cohort and the baseline served 0 requests while they do serve, the selectors match no
# series: try them in Prometheus, or on a host's /metrics. The settings below the selectors are
# the defaults, written out (README: Checks and notifications, the canary).
checks:
  - name: canary
    type: canary
    requests: 'demo_http_requests_total{path=~"/api/.*"}'          # every request served
    errors: 'demo_http_requests_total{path=~"/api/.*", code=~"5.."}'  # the failed ones
    latency: demo_http_request_duration_seconds                     # a histogram: its _bucket series
    # alpha: 0.01          # the chance of a wrong verdict, either way, over the whole stage
    # tolerance: 1.2       # fails once the cohort is shown worse than 1.2 times the baseline
    # min_requests: 100    # cohort requests before it judges at all
    # bound:               # passes once the cohort is shown no worse than this, per metric:
    #   errors: {ratio: 1.5, margin: 4%}   # x the baseline's ratio, or (rare events) 4 points
    #   latency: {ratio: 2, margin: 2%}    # requests slower than the baseline's p95 bucket
""",
}
DOCUMENTATION = "environments.example.yaml"  # every key, documented; shipped with the package

# `init --router nginx`: prod behind nginx, its gray to 10% of users.
ROUTER = """\
    router:                    # nginx in front of prod: gray by users, drained switches (README)
      type: nginx
      hosts: local             # the nginx of this machine
      file: nginx/prod.conf    # the include releaser owns (nginx/site.conf includes it)
      key: {cookie: uid}       # how users are told apart
      backend: "127.0.0.1:{PORT}"
"""
USERS = "    users: 10%                 # of prod's users, by their cookie\n"
SITE = """\
# The site: include it in nginx's http {{}} (as root), then load it:
#   ln -s {directory}/nginx/site.conf /etc/nginx/conf.d/myapp.conf && nginx -t && nginx -s reload
# releaser rewrites prod.conf at every route change; this file is yours.
include {directory}/nginx/prod.conf;
server {{
    listen 127.0.0.1:18180;
    location / {{
        proxy_pass http://$releaser_prod;
        proxy_next_upstream error timeout http_502;
    }}
}}
"""


def scaffold(directory: Path, router: str | None = None) -> list[Path]:
    """Write the starter files; refuses to overwrite anything, and to write through a link.
    With `router` (nginx), prod is behind it: its site and first route are written too."""
    if os.path.lexists(directory) and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    clashes = [name for name in FILES if os.path.lexists(directory / name)]
    linked = [name for name in {str(Path(n).parent) for n in FILES} - {"."} if (directory / name).is_symlink()]
    if clashes or linked:
        raise UsageError(
            f"{directory} already has {', '.join(sorted(clashes + linked))}; init writes only into a fresh directory"
        )
    from .shipped import shipped_file

    written = []
    files = dict(FILES)
    files["playbooks/app.yaml"] = files["playbooks/app.yaml"].replace(
        "nohup PYTHON", "nohup " + shlex.quote(sys.executable)
    )  # the interpreter releaser runs in, which has the placeholder app
    if router is not None:
        config = files["environments.yaml"]
        config = config.replace(
            '      - {name: prod-4, vars: {PORT: "18124"}}\n',
            '      - {name: prod-4, vars: {PORT: "18124"}}\n' + ROUTER,
        )
        files["environments.yaml"] = config.replace("    cohort: 10%\n", "    cohort: 10%\n" + USERS)
        files["nginx/site.conf"] = SITE.format(directory=directory.resolve())
    if not os.path.lexists(directory / DOCUMENTATION):
        files[DOCUMENTATION] = shipped_file(".", DOCUMENTATION).read_text(encoding="utf-8")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = directory / name
            path.parent.mkdir(exist_ok=True)
            with open(path, "x", encoding="utf-8") as handle:  # O_EXCL: never through a planted link
                handle.write(text)
            written.append(path)
        if router is not None:
            written.append(_first_route(directory))
    except OSError as exc:
        raise UsageError(f"cannot write into {directory}: {exc.strerror or exc}") from None
    return written


def _first_route(directory: Path) -> Path:
    """nginx/prod.conf with every host on the stable side: nginx needs the include to start."""
    from .config import load_config
    from .router import router_for
    from .router.route import Route

    prod = load_config(directory / "environments.yaml").environments["prod"]
    if prod.router is None:
        raise ValueError(f"{directory / 'environments.yaml'}: the starter's prod has no router")
    path = directory / "nginx" / "prod.conf"
    with open(path, "x", encoding="utf-8") as handle:
        handle.write(router_for(prod.router, prod).render(Route()))
    return path
