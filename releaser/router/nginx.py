"""nginx: the route as an `http {}` include of upstreams, a sticky `split_clients` and a `map`.

releaser owns one file (`router.file`); the site's own server block sends its traffic through
the variable the file defines, named after the environment:

    include /etc/nginx/releaser/prod.conf;        # in http {}
    location / { proxy_pass http://$releaser_prod; }

A user is known by a cookie, a header or the client address; `split_clients` hashes the key
(MurmurHash2) with the release id as salt, so a user stays on one side for the whole rollout,
and raising the share from 1% to 10% only adds users to the new side. Allowed keys are matched
in a `map` before the split; every key is prefixed there so that no key can read as one of the
map's keywords or as a regular expression.
"""

from __future__ import annotations

import re
import shlex
from typing import ClassVar

from ..model import RouterSpec
from ..schema import render_template
from .base import Router
from .route import Route

_VARIABLE_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def variable(environment: str) -> str:
    """The nginx variable (and upstream name prefix) of an environment: `releaser_<name>`."""
    return "releaser_" + _VARIABLE_UNSAFE.sub("_", environment)


def key_variable(spec: RouterSpec) -> str:
    kind, name = spec.key
    if kind == "cookie":
        return f"$cookie_{name}"
    if kind == "header":
        return "$http_" + name.lower().replace("-", "_")
    return "$remote_addr"


def percent(share: float) -> str:
    """A share as split_clients takes it: at most two decimals, no trailing zeros."""
    return f"{share:.2f}".rstrip("0").rstrip(".")


class NginxRouter(Router):
    DEFAULTS: ClassVar[dict[str, str]] = {"test": "nginx -t", "reload": "nginx -s reload", "pid_file": "/run/nginx.pid"}

    def render(self, route: Route) -> str:
        env, spec = self.environment, self.spec
        name = variable(env.name)
        hosts = [h.name for h in env.hosts]
        stable, new = route.sides(hosts)
        share = route.effective_share(hosts)
        lines = [
            f"# The route of {env.name}, written by releaser: edits here are overwritten.",
            f"# Use it in a server block: proxy_pass http://${name};",
            f"# {self.MARKER} {self.marker(route)}",
        ]
        for side, members in (("stable", stable), ("new", new)):
            if not members:
                continue
            lines.append(f"upstream {name}_{side} {{")
            for host in env.hosts:
                if (host.name in route.new) == (side == "new"):
                    down = " down" if host.name in route.drained else ""
                    lines.append(f"    server {render_template(spec.backend, host)}{down};")
            lines.append("}")
        key = key_variable(spec)
        fallback = "$remote_addr" if spec.without_key == "address" and spec.key[0] != "address" else '""'
        lines += [f"map {key} ${name}_key {{", f'    "" {fallback};', f"    default {key};", "}"]
        if not new:
            default = f"{name}_stable"
        elif not stable:
            default = f"{name}_new"
        elif share > 0:
            lines += [
                f'split_clients "${{{name}_key}}{route.release}" ${name}_split {{',
                f"    {percent(share)}% {name}_new;",
                f"    * {name}_stable;",
                "}",
            ]
            default = f"${name}_split"
        else:
            default = f"{name}_stable"
        lines.append(f'map "k${name}_key" ${name} {{')
        if new and stable:
            lines.append(f'    "k" {name}_stable;')  # no key: the stable side
            lines += [f'    "k{key}" {name}_new;' for key in route.allow]
        lines += [f"    default {default};", "}"]
        return "\n".join(lines) + "\n"

    def apply_script(self, route: Route, drain: bool) -> str:
        """Write the file, test the whole configuration (the old file comes back if it fails),
        reload, and wait until the new route is live: a worker started after the reload, and no
        earlier one still accepts connections (read from /proc: the router's user must be able to
        see nginx's processes). Draining, it also waits (up to drain_timeout) for the old workers to
        finish the requests they hold, so that a drained host has none in flight."""
        spec = self.spec
        text = self.render(route)
        delimiter = "RELEASER_ROUTE_FILE_END"
        if delimiter in text:
            raise ValueError(f"the route file may not contain {delimiter}")
        file = shlex.quote(spec.file)
        return f"""set -u
file={file}; prev={file}.releaser-prev; new={file}.releaser-new
mkdir -p -- "$(dirname -- "$file")"
cat > "$new" <<'{delimiter}'
{text}{delimiter}
master=$(cat -- {shlex.quote(spec.pid_file)} 2>/dev/null | tr -dc 0-9)
before=" $( [ -n "$master" ] && pgrep -P "$master" | tr '\\n' ' ')"
if [ -e "$file" ]; then cp -p -- "$file" "$prev"; else rm -f -- "$prev"; fi
mv -f -- "$new" "$file"
put_back() {{ if [ -e "$prev" ]; then mv -f -- "$prev" "$file"; else rm -f -- "$file"; fi; }}
if ! said=$( {spec.test} 2>&1 ); then
  put_back; printf '%s\\n' "$said" >&2
  echo "releaser: the configuration test refused the new route; the previous file is back, nothing was reloaded" >&2
  exit 3
fi
if ! said=$( {spec.reload} 2>&1 ); then
  put_back; printf '%s\\n' "$said" >&2
  echo "releaser: the reload failed; the previous file is back" >&2
  exit 4
fi
rm -f -- "$prev"
[ -n "$master" ] || {{ echo "RELEASER_ROUTE_UNCONFIRMED no master pid in {spec.pid_file}"; exit 0; }}
started=$(date +%s%N)
# Live once a worker started after the reload and no earlier worker still holds a listening
# socket (one the master shares with its workers): every new connection meets the new route.
while :; do
  fresh=""; busy=""
  listeners=" $(for fd in /proc/"$master"/fd/*; do readlink "$fd"; done 2>/dev/null | grep '^socket:' | tr '\n' ' ')"
  for pid in $(pgrep -P "$master"); do
    case "$before" in
      *" $pid "*)
        for fd in /proc/"$pid"/fd/*; do
          link=$(readlink "$fd" 2>/dev/null) || continue
          case "$listeners" in *" $link "*) busy=$pid ;; esac
        done ;;
      *) fresh=$pid ;;
    esac
  done
  [ -n "$fresh" ] && [ -z "$busy" ] && break
  if [ $(( ($(date +%s%N) - started) / 1000000 )) -gt 10000 ]; then
    echo "releaser: nginx took the reload signal but the new route was not live within 10s (see its error log)" >&2
    exit 5
  fi
  sleep 0.01
done
echo "RELEASER_ROUTE_LIVE $(( ($(date +%s%N) - started) / 1000000 ))"
{self._drain_wait() if drain else ""}"""

    def _drain_wait(self) -> str:
        limit = int(self.spec.drain_timeout * 1000)
        return f"""while :; do
  left=0
  for pid in $before; do kill -0 "$pid" 2>/dev/null && left=$((left + 1)); done
  [ "$left" -eq 0 ] && break
  if [ $(( ($(date +%s%N) - started) / 1000000 )) -gt {limit} ]; then
    echo "RELEASER_ROUTE_DRAIN_TIMEOUT $left"; exit 0
  fi
  sleep 0.02
done
echo "RELEASER_ROUTE_DRAINED $(( ($(date +%s%N) - started) / 1000000 ))"
"""
