"""Waiting on a host for a process releaser started to be ready: its URL answers 2xx, and it
is still running meanwhile. Bash shared by containers (image releases) and services (tarballs)."""

from __future__ import annotations

import shlex

q = shlex.quote

# Whether a URL answers 2xx, asked on the host itself.
_ANSWERS = r"""_answers() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
  else
    wget -q -O /dev/null -T 2 "$1" 2>/dev/null
  fi
}
"""


def wait_ready(what: str, url: str | None, timeout: float, running: str, last_words: str, stop: str) -> str:
    """Bash that waits until `url` answers (or, without one, checks that `what` still runs).
    It fails the phase when `running` (a test) turns false or `timeout` passes, showing what
    the process said (`last_words`, a command) and stopping it (`stop`): a process that never
    became ready serves nobody, and the rollback starts the one before."""
    gone = f"""    {{ {last_words}; }} </dev/null >&2 2>&1 || true
    echo "releaser: {what} stopped before it was ready (its last words are above)" >&2
    {stop}
    _rec failed "" exited
    exit 1
"""
    if not url:
        return f"if ! {{ {running}; }}; then\n{gone}fi\n"
    return (
        _ANSWERS
        + f"""until=$((SECONDS + {max(1, round(timeout))}))
until _answers {q(url)}; do
  if ! {{ {running}; }}; then
{gone}  fi
  if [ "$SECONDS" -ge "$until" ]; then
    {{ {last_words}; }} </dev/null >&2 2>&1 || true
    echo "releaser: {what} was not ready within {round(timeout)}s: {url} did not answer 2xx" >&2
    {stop}
    _rec failed "" "not ready"
    exit 1
  fi
  sleep 0.2
done
"""
    )
