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


def wait_ready(
    what: str, url: str | None, timeout: float, running: str, status: str, last_words: str, stop: str | None
) -> str:
    """Bash that waits until `url` answers (or, without one, checks that `what` still runs).
    It fails the phase when `running` (a test) turns false, saying the exit status (`status`,
    a command printing it) and what the process said last (`last_words`, a command), or when
    `timeout` passes. A process that never became ready is stopped (`stop`): it serves
    nobody, and the rollback starts the one before. A rollback's own process is left running
    (`stop` None): the release it goes back to, unproven, serves better than nothing."""
    if stop is None:
        ending, left = "", "; it is left running: check the ready URL in the playbook"
    else:
        ending, left = f"    {stop}\n", ""
    gone = f"""    {{ {last_words}; }} </dev/null >&2 2>&1 || true
    code=$({status})
    echo "releaser: {what} exited (status ${{code:-?}}) before it was ready; what it said last is just before this" >&2
{ending}    _rec failed "" exited
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
    echo "releaser: {what} was not ready within {round(timeout)}s: {url} did not answer 2xx{left}" >&2
{ending}    _rec failed "" ready
    exit 1
  fi
  sleep 0.2
done
"""
    )
