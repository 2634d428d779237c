"""The project's fixed names, in a module that imports nothing: the CLI's help needs them
before it needs anything else."""

STAGE_ORDER = ("selftest", "test", "gray", "full")
DEFAULT_CONFIG = "environments.yaml"  # the configuration a command reads unless given -c
DEFAULT_EVENTS = (
    "stage.started",
    "stage.passed",
    "stage.failed",
    "stage.held",
    "bake.too_short",
    "rollback.done",
    "rollback.incomplete",
    "alarm",
)  # what a webhook is sent unless it lists its events
