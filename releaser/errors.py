"""Errors that end a command, each carrying the exit code of the CLI contract."""

from __future__ import annotations

from .record import Record

# 0: the command did what was asked
EXIT_STAGE_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 3
EXIT_NEEDS_HUMAN = 4
EXIT_INCONCLUSIVE = 5


class ReleaserError(Exception):
    """Base of every error the CLI turns into an exit code and a message."""

    exit_code = EXIT_NEEDS_HUMAN


class UsageError(ReleaserError):
    """Bad flags, ids or requests that can be fixed by the caller; nothing was changed."""

    exit_code = EXIT_USAGE


class ConfigProblem(Record, frozen=True):
    """One thing wrong in a configuration file, at its line and key."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(UsageError):
    """One or more problems in the configuration files, each with file, line and key."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class BusyError(ReleaserError):
    """Another promotion holds the environment's lock."""

    exit_code = EXIT_BUSY


class Refused(ReleaserError):
    """Not now, or not by you: a freeze, a rejected approval, an approver who may not approve."""

    exit_code = EXIT_BUSY


class StageFailed(ReleaserError):
    """A stage failed and its hosts were rolled back."""

    exit_code = EXIT_STAGE_FAILED


class NeedsHuman(ReleaserError):
    """A rollback failed or the state cannot be reconciled automatically."""

    exit_code = EXIT_NEEDS_HUMAN


class Inconclusive(ReleaserError):
    """The checks could not decide and the stage holds: nothing was rolled back."""

    exit_code = EXIT_INCONCLUSIVE


class AwaitingApproval(ReleaserError):
    """The stage waits for an approval: nothing ran; promote again (or --wait) once it is given."""

    exit_code = EXIT_INCONCLUSIVE
