"""The project's fixed names, in a module that imports only the event catalogue (which imports
nothing): the CLI's help needs them before it needs anything else."""

from .events import Event

STAGE_ORDER = ("selftest", "test", "gray", "full")
DEFAULT_CONFIG = "environments.yaml"  # the configuration a command reads unless given -c
DEFAULT_EVENTS = (
    Event.APPROVAL_REQUESTED,
    Event.STAGE_STARTED,
    Event.STAGE_PASSED,
    Event.STAGE_FAILED,
    Event.STAGE_HELD,
    Event.BAKE_TOO_SHORT,
    Event.ROLLBACK_DONE,
    Event.ROLLBACK_INCOMPLETE,
    Event.ALARM,
    Event.MIGRATION_DONE,
    Event.MIGRATION_FAILED,
    Event.DRILL_DONE,
)  # what a webhook is sent unless it lists its events
