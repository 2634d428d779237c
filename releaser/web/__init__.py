"""`releaser serve`: the dashboard. Pages read the same state as the CLI (status, the journal,
approvals, windows, reports, drills); signed-in users act through the same functions the CLI
calls (web/actions.py), as themselves. Starlette and uvicorn are imported by `serve` alone."""
