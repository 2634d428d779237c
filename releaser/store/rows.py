"""Rows into records, and the small SQL helpers every table group shares.

The store's queries return rows that read by column name (sqlite3.Row, or psycopg's dict rows);
these functions turn them into the model's records, decoding the JSON and enum columns.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from ..model import (
    ApprovalRequest,
    ApprovalState,
    Cause,
    Claim,
    DeployAction,
    Deployment,
    DeploymentStatus,
    Event,
    Release,
    ReleaseStatus,
    Report,
    ReportState,
    RollbackRun,
    RollbackStatus,
    RunStatus,
    SchemaChange,
    ServiceReport,
    StageRun,
)
from .base import StoreError

_Row = TypeVar("_Row")


def _written(record: _Row | None) -> _Row:
    """A record this connection has just written, read back."""
    if record is None:
        raise StoreError("the state database lost a record as it was written; nothing else was changed")
    return record


def _report(row: Any) -> Report:
    data = dict(row)
    data["state"] = ReportState(data["state"])
    return Report(**data)


def _service_report(row: Any) -> ServiceReport:
    return ServiceReport(**{**dict(row), "state": ReportState(row["state"])})


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _release(row: Any) -> Release:
    data = dict(row)
    data["features"] = json.loads(data["features"])
    data["status"] = ReleaseStatus(data["status"])
    data["schema"] = SchemaChange.from_dict(json.loads(data.pop("schema_change", None) or "{}"))
    return Release(**data)


def _stage_run(row: Any) -> StageRun:
    data = dict(row)
    data.pop("lock_token", None)
    data["status"] = RunStatus(data["status"])
    data["forced"] = bool(data["forced"])
    return StageRun(**data)


def _rollback(row: Any) -> RollbackRun:
    data = dict(row)
    data.pop("lock_token", None)
    data["left"] = json.loads(data.pop("left_hosts"))
    data["plan"] = json.loads(data["plan"])
    data["releases"] = json.loads(data["releases"])
    data["status"] = RollbackStatus(data["status"])
    data["cause"] = Cause(data["cause"])
    return RollbackRun(**data)


def _where(**columns: Any) -> tuple[str, list]:
    """`WHERE a = ? AND b = ?` for the columns given a value (fixed names, never user input)."""
    given = {name: value for name, value in columns.items() if value is not None}
    return (f"WHERE {' AND '.join(f'{name} = ?' for name in given)}" if given else ""), list(given.values())


def _approval(row: Any) -> ApprovalRequest:
    data = dict(row)
    data["approvers"] = json.loads(data["approvers"])
    data["not_by_promoter"] = bool(data["not_by_promoter"])
    data["state"] = ApprovalState(data["state"])
    return ApprovalRequest(**data)


def _deployment(row: Any) -> Deployment:
    data = dict(row)
    data["action"] = DeployAction(data["action"])
    data["status"] = DeploymentStatus(data["status"])
    return Deployment(**data)


def _claim_values(claim: Claim | None) -> tuple:
    if claim is None:
        return (None, None, None, None)
    return (claim.pid, claim.hostname, claim.lease_until, claim.token)


def _event(row: Any) -> Event:
    data = dict(row)
    data["data"] = json.loads(data["data"])
    return Event(**data)
