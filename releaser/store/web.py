"""The dashboard's tables: signed-in sessions (by the hash of their cookie's token, which is
never stored), sign-in attempts (what throttling counts), and the one-time form tokens used."""

from __future__ import annotations

from ..model import WebSession, utcnow
from .plumbing import Plumbing


class WebTables(Plumbing):
    """Sessions, sign-in attempts and used form tokens; every server reading the state shares them."""

    def start_session(self, session_id: str, username: str, via: str, address: str, expires_at: str) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO web_sessions(id, username, via, address, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, username, via, address, utcnow(), expires_at),
            )

    def get_session(self, session_id: str) -> WebSession | None:
        row = self._db.execute("SELECT * FROM web_sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else WebSession(**dict(row))

    def end_session(self, session_id: str) -> None:
        with self.transaction():
            self._db.execute(
                "UPDATE web_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL", (utcnow(), session_id)
            )

    def record_signin(self, username: str, address: str, ok: bool) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO web_signins(username, address, at, ok) VALUES (?, ?, ?, ?)",
                (username, address, utcnow(), int(ok)),
            )

    def failed_signins(self, since: str, username: str, address: str) -> tuple[int, int]:
        """Failed attempts since `since` for this user name from this address, and from this address."""
        row = self._db.execute(
            "SELECT SUM(CASE WHEN username = ? AND address = ? THEN 1 ELSE 0 END) AS by_user,"
            " SUM(CASE WHEN address = ? THEN 1 ELSE 0 END) AS by_address"
            " FROM web_signins WHERE at >= ? AND ok = 0",
            (username, address, address, since),
        ).fetchone()
        return int(row["by_user"] or 0), int(row["by_address"] or 0)

    def spend_form(self, nonce: str, session_id: str) -> bool:
        """Mark a form's one-time token used; False if it was used already (a replay)."""
        with self.transaction():
            if self._db.execute("SELECT 1 FROM web_forms WHERE nonce = ?", (nonce,)).fetchone() is not None:
                return False
            self._db.execute(
                "INSERT INTO web_forms(nonce, session, used_at) VALUES (?, ?, ?)", (nonce, session_id, utcnow())
            )
            return True
