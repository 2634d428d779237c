"""releaser: promote a release through selftest -> test -> gray -> full, with automatic rollback."""

__version__ = "0.1.0"
