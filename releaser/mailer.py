"""Hand a message to an SMTP server, with one explicit commit point.

SMTP gives no way to ask whether a message arrived. The only moment a message can be
delivered without the sender learning it is the round trip of the final "." that ends
DATA: before it the server discards a half-sent message, after the server's reply the
sender knows. `send` calls `on_commit` (which records that moment durably) just before
that line goes out, so a sender that dies can tell "certainly not sent" (retry) from
"possibly sent" (never re-sent on its own; see report.outbox).
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import parseaddr

from . import secrets
from .model import MailSpec


class MailNotSent(Exception):
    """The server certainly does not have the message. `permanent`: retrying will not help."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class MailUncertain(Exception):
    """The connection broke during the final round trip: the server may have the message."""


def _check(reply: tuple[int, bytes], expected: tuple[int, ...], what: str) -> None:
    code, text = reply
    if code not in expected:
        raise MailNotSent(f"{what}: {code} {text.decode(errors='replace')}", permanent=code >= 500)


def send(
    spec: MailSpec, message: EmailMessage, recipients: tuple[str, ...], on_commit: Callable[[], None]
) -> dict[str, str]:
    """Deliver `message`; returns the recipients the server refused (others got it).
    Raises MailNotSent (nothing delivered) or MailUncertain (maybe delivered)."""
    committed = False
    try:
        context = ssl.create_default_context(cafile=spec.ca_file)
        smtp: smtplib.SMTP
        if spec.security == "ssl":
            smtp = smtplib.SMTP_SSL(spec.host, spec.port, timeout=spec.timeout, context=context)
        else:
            smtp = smtplib.SMTP(spec.host, spec.port, timeout=spec.timeout)
        with smtp:
            smtp.ehlo()
            if spec.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if spec.username_env:
                smtp.login(*secrets.read_credentials(spec.username_env, spec.password_env), initial_response_ok=False)
            _check(smtp.mail(parseaddr(spec.sender)[1]), (250,), "MAIL FROM")
            refused = {}
            for recipient in recipients:
                code, text = smtp.rcpt(parseaddr(recipient)[1])
                if code not in (250, 251):
                    refused[recipient] = f"{code} {text.decode(errors='replace')}"
            if len(refused) == len(recipients):
                raise MailNotSent(
                    "every recipient was refused: " + "; ".join(f"{r}: {w}" for r, w in refused.items()),
                    permanent=all(w.startswith("5") for w in refused.values()),
                )
            _check(smtp.docmd("DATA"), (354,), "DATA")
            body = re.sub(rb"(?m)^\.", b"..", message.as_bytes(policy=SMTP))
            smtp.send(body if body.endswith(b"\r\n") else body + b"\r\n")
            on_commit()
            committed = True
            smtp.send(b".\r\n")
            _check(smtp.getreply(), (250,), "end of DATA")
            return refused
    except MailNotSent:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise MailNotSent(f"login refused: {exc.smtp_code}", permanent=True) from None
    except (TimeoutError, smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        if committed:
            raise MailUncertain(f"the connection broke while the server was accepting the message: {exc}") from None
        raise MailNotSent(
            f"{type(exc).__name__}: {exc}", permanent=isinstance(exc, ssl.SSLCertVerificationError)
        ) from None
