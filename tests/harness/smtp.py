"""A real SMTP server (aiosmtpd) on a loopback port, with STARTTLS or implicit TLS, login,
and hooks that stall a session at a chosen command (to kill a sender there)."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import ssl
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from releaser.demo.ports import free_ports
from tests.harness.marks import needs


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class Mailbox:
    """What the server accepted, and where to stall."""

    def __init__(self, refuse: tuple[str, ...] = ()):
        self.messages: list[dict] = []
        self.refuse = refuse
        self.rcpt_delay = 0.0
        self.data_delay = 0.0
        self.rcpt_reached = threading.Event()
        self.rcpt_handled = threading.Semaphore(0)  # released as each RCPT handler ends
        self.data_reached = threading.Event()
        self.sessions_done = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpt_reached.set()
        try:  # released however the handler ends: returned, or cancelled with its connection
            if self.rcpt_delay:
                await asyncio.sleep(self.rcpt_delay)
            if address in self.refuse:
                return "550 5.1.1 no such mailbox"
            envelope.rcpt_tos.append(address)
            return "250 OK"
        finally:
            self.rcpt_handled.release()

    async def handle_DATA(self, server, session, envelope):
        """Queue the message, then (with data_delay) be slow to say so: the reply a sender
        that dies now never reads."""
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "message": email.message_from_bytes(envelope.original_content, policy=email.policy.default),
            }
        )
        self.data_reached.set()
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        return "250 2.0.0 accepted"


class SmtpServer:
    def __init__(
        self,
        directory: Path,
        security: str = "starttls",
        users: dict[str, str] | None = None,
        refuse: tuple[str, ...] = (),
    ):
        needs("smtp")
        directory.mkdir(parents=True, exist_ok=True)
        self.cert, key = self_signed(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.users = users or {}
        self.mailbox = Mailbox(refuse)
        self.port = free_ports(1)[0]
        options: dict = {}
        if security == "starttls":
            options.update(tls_context=context, require_starttls=True)
        elif security == "ssl":
            options.update(ssl_context=context)
        if self.users:
            # aiosmtpd counts only STARTTLS as TLS; implicit TLS is encrypted from the first byte
            options.update(authenticator=self._authenticate, auth_require_tls=security == "starttls")
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()
        self.running = True

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        login, password = auth_data.login.decode(), auth_data.password.decode()
        return AuthResult(success=self.users.get(login) == password, handled=False)  # handled=False: reply 535

    @property
    def messages(self) -> list[dict]:
        return self.mailbox.messages

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.controller.stop()
