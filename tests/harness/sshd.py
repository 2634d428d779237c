"""Real OpenSSH servers on loopback addresses for tests and benchmarks.

sshd listens on at most 16 addresses per process, so hosts are spread over several sshd
processes. Every host gets its own 127.0.0.x address; all share one port number.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from releaser.demo.ports import free_ports
from tests.harness.marks import needs

if TYPE_CHECKING:
    from releaser.model import SshOptions

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
MAX_ADDRESSES_PER_SSHD = 16


def _free_port(addresses: list[str]) -> int:
    for _ in range(200):
        port = free_ports(1, addresses[0])[0]
        try:
            for address in addresses[1:]:
                with socket.socket() as sock:
                    sock.bind((address, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on every address")


def _first_address() -> int:
    """Where this process's hosts start in 127.0.0.0/24: pytest-xdist workers get a block of
    64 addresses each, so that two workers' fleets never share an address."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return 2 + 64 * (int(worker.removeprefix("gw")) % 4)


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "releaser-test", "-f", str(path)], check=True)


@dataclass
class Sshd:
    index: int
    addresses: list[str]
    config: Path
    host_key: Path
    process: subprocess.Popen | None = None


@dataclass
class SshFleet:
    """`count` SSH hosts on 127.0.0.<first>.. served by sshd processes of `per_sshd` addresses."""

    base: Path
    count: int
    first: int = field(default_factory=_first_address)
    per_sshd: int = MAX_ADDRESSES_PER_SSHD
    user: str = field(default_factory=getpass.getuser)
    max_startups: str = "500"  # "" for sshd's own default (10:30:100), as a jump host has
    servers: list[Sshd] = field(default_factory=list)

    def __post_init__(self):
        needs("sshd")
        self.base.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation directory
        if self.first + self.count > 255:
            raise ValueError(f"{self.count} hosts from 127.0.0.{self.first} do not fit in 127.0.0.0/24")
        self.addresses = [f"127.0.0.{self.first + i}" for i in range(self.count)]
        self.port = _free_port(self.addresses)
        self.identity = self.base / "id_ed25519"
        keygen(self.identity)
        (self.base / "authorized_keys").write_text((self.base / "id_ed25519.pub").read_text())
        self.known_hosts = self.base / "known_hosts"
        per = min(self.per_sshd, MAX_ADDRESSES_PER_SSHD)
        for index, start in enumerate(range(0, self.count, per)):
            addresses = self.addresses[start : start + per]
            host_key = self.base / f"host_key_{index}"
            keygen(host_key)
            config = self.base / f"sshd_{index}.conf"
            listen = "\n".join(f"ListenAddress {a}" for a in addresses)
            config.write_text(f"""\
Port {self.port}
{listen}
HostKey {host_key}
PidFile {self.base}/sshd_{index}.pid
AuthorizedKeysFile {self.base}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
{f"MaxStartups {self.max_startups}" if self.max_startups else ""}
MaxSessions 100
AllowTcpForwarding yes
Subsystem sftp internal-sftp
LogLevel ERROR
""")
            self.servers.append(Sshd(index, addresses, config, host_key))
        self.write_known_hosts()
        for server in self.servers:
            self.start(server)

    def known_hosts_lines(self) -> str:
        lines = []
        for server in self.servers:
            key_type, key_data = server.host_key.with_suffix(".pub").read_text().split()[:2]
            lines += [f"[{a}]:{self.port} {key_type} {key_data}" for a in server.addresses]
        return "\n".join(lines) + "\n"

    def write_known_hosts(self) -> None:
        self.known_hosts.write_text(self.known_hosts_lines())

    def server_of(self, address: str) -> Sshd:
        return next(s for s in self.servers if address in s.addresses)

    def start(self, server: Sshd) -> None:
        server.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(server.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.base / f"sshd_{server.index}.log", "ab"),
        )
        deadline = time.monotonic() + 10
        for address in server.addresses:
            while True:
                try:
                    socket.create_connection((address, self.port), timeout=0.5).close()
                    break
                except OSError:
                    if server.process.poll() is not None or time.monotonic() > deadline:
                        log = (self.base / f"sshd_{server.index}.log").read_text()
                        raise RuntimeError(f"sshd {server.index} did not start: {log}") from None
                    time.sleep(0.02)

    def heal(self) -> None:
        """Undo what a test did to the fleet: every sshd running, known_hosts matching."""
        for server in self.servers:
            if server.process is None or server.process.poll() is not None:
                self.start(server)
        self.write_known_hosts()

    def stop(self, server: Sshd) -> None:
        """The host is gone: its sshd and every connection it serves (open sessions too)."""
        if server.process and server.process.poll() is None:
            for child in _children(server.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            server.process.terminate()
            server.process.wait(timeout=10)

    def rekey(self, server: Sshd) -> None:
        """Give a server a new host key (as a reinstalled host has), known_hosts unchanged."""
        self.stop(server)
        server.host_key.unlink()
        server.host_key.with_suffix(".pub").unlink()
        keygen(server.host_key)
        self.start(server)

    def close(self) -> None:
        for server in self.servers:
            self.stop(server)

    def options(self, **extra) -> SshOptions:
        """releaser's ssh options for hosts of this fleet, with `extra` over them."""
        from releaser.model import SshOptions

        base = {
            "user": self.user,
            "port": self.port,
            "identity_file": str(self.identity),
            "known_hosts": str(self.known_hosts),
            "config_file": os.devnull,
        }
        return SshOptions(**{**base, **extra})

    def ssh_options(self, **extra: str) -> str:
        """The `ssh:` mapping for environments.yaml, as flow YAML."""
        options = {
            "user": self.user,
            "port": str(self.port),
            "identity_file": str(self.identity),
            "known_hosts": str(self.known_hosts),
            "config_file": os.devnull,
            **extra,
        }
        return "{" + ", ".join(f'{k}: "{v}"' if k != "port" else f"{k}: {v}" for k, v in options.items()) + "}"


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (sshd forks one per connection)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def ssh_session(fleet: SshFleet, address: str, **options):
    """A live SSH session from releaser's own transport to `address` on the fleet, with `options` over its defaults."""
    from releaser.model import Environment, Host
    from releaser.transport.ssh import SshTransport

    fleet.heal()
    host = Host("h", address, "/tmp", ssh=fleet.options(**options))
    env = Environment("e", "ssh", "app", (host,))
    return SshTransport(env).connect(host)
