"""The ssh transport: fabric for connection set-up (ssh_config, bastion, keys), paramiko
channels for the work: one connection per host per stage, one kept shell for releaser's own
phases (`kept_shell`), a lone exec for other scripts, SFTP uploads.

Host keys are verified against known_hosts; fabric's default of accepting any key is
replaced. `host_key_policy: accept-new` accepts (and records) keys of hosts never seen,
and still refuses a changed key, like OpenSSH's StrictHostKeyChecking=accept-new.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import logging
import math
import os
import resource
import shlex
import stat
import threading
import time
from pathlib import Path

import paramiko
from fabric import Config, Connection
from paramiko.ssh_exception import AuthenticationException, BadHostKeyException, SSHException
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from ..model import Environment, Host, SshOptions
from .base import (
    HELD_GRACE,
    AccessRefused,
    CommandResult,
    HostKeyChanged,
    Notify,
    OutputFn,
    Session,
    Transport,
    following,
    held_output,
    no_answer,
    said,
)
from .kept_shell import KeptShell, ShellGone

# paramiko logs a dropped handshake with its traceback, which Python prints when nothing is
# configured; releaser says what became of each host in its own words.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

_KNOWN_HOSTS_WRITE = threading.Lock()
_KILL_GRACE = 5  # seconds between the remote TERM and KILL of a command past its timeout


class HostKeyError(SSHException):
    """A host key that is unknown (under `verify`) or that changed; never retried."""


def fingerprint(key: paramiko.PKey) -> str:
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for keys its client was not given (changed keys raise
    BadHostKeyException before this). Refuses, or with accept-new records the key."""

    def __init__(self, host: Host, known_hosts: Path, accept_new: bool, notify: Notify | None, hop: bool = False):
        self.host, self.known_hosts, self.accept_new, self.notify = host, known_hosts, accept_new, notify
        self.where = "jump host " if hop else ""

    def missing_host_key(self, client, hostname, key):
        if not self.accept_new:
            raise HostKeyError(
                f"{self.host.name} ({self.where}{hostname}): unknown host key {fingerprint(key)}; add it to "
                f"{self.known_hosts} (after checking it out of band) or set `ssh: {{host_key_policy: accept-new}}`"
            )
        # The client's keys were looked up before its turn to shake hands: hosts behind one new
        # jump host all find its key missing, and the first of them records it meanwhile.
        with _KNOWN_HOSTS_WRITE:
            recorded = _recorded_key(self.known_hosts, hostname, key.get_name())
            if recorded is None:
                self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
                with open(self.known_hosts, "a", encoding="ascii") as handle:
                    handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        if recorded is not None and recorded.asbytes() != key.asbytes():
            raise BadHostKeyException(hostname, key, recorded)
        client.get_host_keys().add(hostname, key.get_name(), key)
        if recorded is None and self.notify:
            self.notify(
                "hostkey.accepted",
                f"{self.host.name}: accepted the new host key {fingerprint(key)} of {self.where}{hostname} "
                "(accept-new)",
                {"host": self.host.name, "fingerprint": fingerprint(key), "known_hosts": str(self.known_hosts)},
            )


def _recorded_key(known_hosts: Path, hostname: str, key_type: str) -> paramiko.PKey | None:
    """The key of `key_type` that `known_hosts` holds for `hostname` now, read from the file
    itself; only the lines naming the host are parsed (parsing a key is what costs)."""
    try:
        lines = known_hosts.read_text(encoding="ascii", errors="replace").splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or fields[1] != key_type:
            continue
        names = fields[0].split(",")
        if hostname in names or any(
            n.startswith("|1|") and paramiko.HostKeys.hash_host(hostname, n) == n for n in names
        ):
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
            if entry is not None:
                return entry.key
    return None


def _transient(exc: BaseException) -> bool:
    """Worth another try: the network, not the host's identity or our credentials."""
    if isinstance(exc, (AuthenticationException, BadHostKeyException, HostKeyError)):
        return False
    return isinstance(exc, (OSError, EOFError, SSHException))


class SshSession(Session):
    def __init__(self, connection: Connection, host: Host, io_timeout: float):
        self.connection, self.host, self.io_timeout = connection, host, io_timeout
        self._sftp: paramiko.SFTPClient | None = None
        self._shell: KeptShell | None = None
        self._shell_busy = threading.Lock()

    def _alive(self) -> None:
        """Refuse to work on a connection the host dropped (fabric would quietly dial again)."""
        transport = self.connection.client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionError(f"{self.host.name} ({self.host.address}) unreachable: the connection was lost")

    def _channel(self) -> paramiko.Channel:
        """A new session channel on the connection, or ConnectionError naming the host."""
        self._alive()
        try:
            return self.connection.client.get_transport().open_session(timeout=self.host.ssh.connect_timeout)
        except (OSError, EOFError, SSHException) as exc:
            raise ConnectionError(f"{self.host.name} ({self.host.address}) unreachable: {exc}") from None

    def run(self, script: str, timeout: float) -> CommandResult:
        started = time.monotonic()
        channel = self._channel()
        try:
            # The remote `timeout` ends a hung command on the host itself; the local deadline
            # (a little later) covers a network that stops answering.
            channel.exec_command(f"timeout -k {_KILL_GRACE} {math.ceil(timeout)} bash -s")
            channel.sendall(script.encode())
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = started + timeout + _KILL_GRACE + 5
            exited_at = None
            # Block on the channel, waking once a second to notice an exit status after which the
            # output neither ends nor moves for HELD_GRACE: a background process the script
            # started holds it.
            # stderr is buffered by paramiko meanwhile; scripts write little of it.
            while True:
                now = time.monotonic()
                if exited_at is None and channel.exit_status_ready():
                    exited_at = now
                if exited_at is not None and now - exited_at >= HELD_GRACE:
                    _drain_stderr(channel, err)
                    code = channel.recv_exit_status()
                    return CommandResult(
                        code,
                        out.decode(errors="replace"),
                        said(err.decode(errors="replace"), held_output(code)),
                        now - started,
                        held=True,
                    )
                if now >= deadline:
                    _drain_stderr(channel, err)
                    return no_answer(out, err, timeout, now - started)
                channel.settimeout(
                    max(0.01, min(deadline - now, 1.0 if exited_at is None else exited_at + HELD_GRACE - now))
                )
                try:
                    chunk = channel.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                out += chunk
                if exited_at is not None:  # output still flowing after the exit: not held (yet)
                    exited_at = time.monotonic()
            _drain_stderr(channel, err)
            if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                return no_answer(out, err, timeout, time.monotonic() - started)
            code = channel.recv_exit_status()
            timed_out = code in (124, 137) and time.monotonic() - started >= timeout
            text_err = err.decode(errors="replace")
            if timed_out:
                text_err = said(text_err, f"releaser: command timed out after {timeout:g}s")
            return CommandResult(code, out.decode(errors="replace"), text_err, time.monotonic() - started, timed_out)
        finally:
            channel.close()

    def stream(self, script: str, on_output: OutputFn) -> int:
        channel = self._channel()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            channel.set_combine_stderr(True)
            # the script on the command line: its input stays open until the channel closes
            channel.exec_command(f"bash -c {shlex.quote(following(script))}")
            channel.settimeout(1.0)  # wake now and then: Ctrl-C is seen between waits
            while True:
                try:
                    chunk = channel.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                on_output(decoder.decode(chunk))
            on_output(decoder.decode(b"", final=True))
            return channel.recv_exit_status()
        finally:
            channel.close()

    def run_in_shell(self, script: str, timeout: float) -> CommandResult:
        if not self._shell_busy.acquire(blocking=False):  # a look into a slow phase meanwhile
            return self.run(script, timeout)
        try:
            try:
                return self._in_shell(script, timeout)
            except ShellGone:  # it ended while idle, before this request reached it: a new one
                return self._in_shell(script, timeout)
        finally:
            self._shell_busy.release()

    def _in_shell(self, script: str, timeout: float) -> CommandResult:
        self._alive()
        if self._shell is None:
            try:
                transport = self.connection.client.get_transport()
                self._shell = KeptShell(transport, self.host.ssh.connect_timeout, _KILL_GRACE)
            except (OSError, EOFError, SSHException) as exc:
                raise ConnectionError(f"{self.host.name} ({self.host.address}) unreachable: {exc}") from None
        shell = self._shell
        try:
            return shell.run(script, timeout)
        except BaseException:  # a connection lost mid-request: no later request may follow it
            shell.close()
            raise
        finally:
            if shell.channel.closed:  # timed out, ended or gone: the next script gets a new shell
                self._shell = None

    def _sftp_client(self) -> paramiko.SFTPClient:
        self._alive()
        if self._sftp is None:
            self._sftp = self.connection.sftp()
            self._sftp.get_channel().settimeout(self.io_timeout)  # a stalled upload fails the host
        return self._sftp

    def put(self, local_path: str, remote_path: str) -> None:
        sftp = self._sftp_client()
        try:
            sftp.put(local_path, remote_path)
        except FileNotFoundError:
            _sftp_makedirs(sftp, os.path.dirname(remote_path))
            sftp.put(local_path, remote_path)

    def put_private(self, data: bytes, remote_path: str) -> None:
        sftp = self._sftp_client()
        directory = os.path.dirname(remote_path)
        _sftp_makedirs(sftp, directory)
        sftp.chmod(directory, 0o700)  # before the file exists: no one else may open it meanwhile
        part = f"{remote_path}.part"
        with sftp.open(part, "wb") as handle:
            sftp.chmod(part, 0o600)
            handle.write(data)
        sftp.posix_rename(part, remote_path)

    def close(self) -> None:
        if self._shell is not None:
            self._shell.close()
        if self._sftp is not None:
            self._sftp.close()
        self.connection.close()


def _drain_stderr(channel: paramiko.Channel, err: bytearray) -> None:
    while channel.recv_stderr_ready():
        err += channel.recv_stderr(65536)


def _sftp_makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    parts, current = [p for p in path.split("/") if p], ""
    for part in parts:
        current += "/" + part
        try:
            if not stat.S_ISDIR(sftp.stat(current).st_mode):
                raise NotADirectoryError(current)
        except FileNotFoundError:
            try:
                sftp.mkdir(current)
            except OSError:  # made meanwhile by another session (hosts sharing a disk): fine if a directory
                if not stat.S_ISDIR(sftp.stat(current).st_mode):
                    raise


def _room_for(files: int) -> None:
    """A fleet keeps one connection per host open for a stage, each holding a file or a few:
    past some hundreds of hosts the usual soft limit of 1024 open files runs out, so raise it
    (up to the hard limit) first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = files + 256  # the store, logs, pipes of local work
    if soft != resource.RLIM_INFINITY and soft < wanted:
        allowed = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (allowed, hard))


def _known_hosts_name(connection: Connection) -> str:
    """How known_hosts names the host `connection` dials."""
    return connection.host if connection.port == 22 else f"[{connection.host}]:{connection.port}"


def _parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    user, _, rest = spec.rpartition("@")
    host, _, port = rest.partition(":")
    return user or None, host, int(port) if port else None


class SshTransport(Transport):
    def __init__(self, environment: Environment, notify: Notify | None = None):
        super().__init__(environment, notify)
        # A storm of handshakes costs every party at once, and an sshd (a jump host's above all:
        # every host's connection passes it) drops those beyond its MaxStartups.
        self._handshakes = threading.BoundedSemaphore(environment.handshakes)
        self._known: dict[Path, tuple[tuple[int, int, int], paramiko.HostKeys]] = {}
        self._known_lock = threading.Lock()
        # A host's connection holds one socket, behind any number of jump hosts too (each hop after
        # the first is a channel inside the one before); through an ssh_config ProxyCommand it holds
        # that process's three pipes instead. Which hosts go which way only fabric's ssh_config lookup
        # at connect tells (doing it here would also run `Match exec` commands), so count three for
        # every host: the soft limit is a ceiling, raising it costs nothing.
        _room_for(len(environment.hosts) * 3)

    def _connection(
        self, host: Host, address: str, user: str | None, port: int | None, gateway: Connection | None = None
    ) -> Connection:
        """Without `gateway`, fabric takes one from ssh_config (ProxyJump, ProxyCommand) itself."""
        options: SshOptions = host.ssh
        config = Config(runtime_ssh_path=options.config_file) if options.config_file else Config()
        connect_kwargs: dict[str, object] = {
            "auth_timeout": options.auth_timeout,
            "banner_timeout": options.connect_timeout,
            "allow_agent": True,
        }
        if options.identity_file:
            connect_kwargs["key_filename"] = [options.identity_file]
        return Connection(
            address,
            user=user,
            port=port,
            config=config,
            connect_timeout=math.ceil(options.connect_timeout),
            connect_kwargs=connect_kwargs,
            gateway=gateway,
        )

    def _verify_host_key(self, connection: Connection, host: Host, hop: bool = False) -> None:
        """Give `connection` the known_hosts keys of its host and `_HostKeyPolicy` in place of
        fabric's accept-anything default; the same for each jump host before it: releaser's
        `ssh.jump`, and those fabric built itself from ssh_config's ProxyJump (a chain of
        Connections, each the gateway of the one after it)."""
        options = host.ssh
        known_hosts = Path(
            options.known_hosts or connection.ssh_config.get("userknownhostsfile", "~/.ssh/known_hosts").split()[0]
        ).expanduser()
        client, name = connection.client, _known_hosts_name(connection)
        for key_type, key in (self._known_hosts(known_hosts).lookup(name) or {}).items():
            client.get_host_keys().add(name, key_type, key)
        client.set_missing_host_key_policy(
            _HostKeyPolicy(host, known_hosts, options.host_key_policy == "accept-new", self.notify, hop)
        )
        if isinstance(connection.gateway, Connection):  # not a ProxyCommand string
            self._verify_host_key(connection.gateway, host, hop=True)

    def _known_hosts(self, path: Path) -> paramiko.HostKeys:
        """A known_hosts file read once per transport (again when it changes): read for every
        connection, a fleet's known_hosts costs O(hosts) per host, 45 ms each at 200 hosts."""
        try:
            status = path.stat()
        except OSError:  # none yet: every key is unknown
            return paramiko.HostKeys()
        stamp = (status.st_ino, status.st_mtime_ns, status.st_size)  # a file renamed in place has a new inode
        with self._known_lock:
            cached = self._known.get(path)
            if cached is None or cached[0] != stamp:
                cached = (stamp, paramiko.HostKeys(str(path)))
                self._known[path] = cached
            return cached[1]

    def connect(self, host: Host) -> Session:
        options = host.ssh
        gateway = None
        if options.jump:
            jump_user, jump_host, jump_port = _parse_jump(options.jump)
            gateway = self._connection(host, jump_host, jump_user, jump_port)
        connection = self._connection(host, host.address, options.user, options.port, gateway)
        self._verify_host_key(connection, host)
        try:
            self._open(connection)
        except BadHostKeyException as exc:
            # paramiko names the host as it was dialled, _HostKeyPolicy as known_hosts does
            target = exc.hostname in (connection.host, _known_hosts_name(connection))
            where = host.address if target else f"jump host {exc.hostname}"
            raise HostKeyChanged(
                f"{host.name} ({where}): HOST KEY CHANGED: known_hosts has {fingerprint(exc.expected_key)}, "
                f"the host offered {fingerprint(exc.key)}; refusing to connect (a reinstalled host, or someone "
                "in the middle); fix known_hosts after checking"
            ) from None
        except HostKeyError as exc:
            raise AccessRefused(str(exc)) from None
        except AuthenticationException as exc:
            key = f" with {options.identity_file}" if options.identity_file else " (the SSH agent's and default keys)"
            raise AccessRefused(
                f"{host.name}: authentication failed as {connection.user}{key}: {exc}; "
                "check `ssh.user` and `ssh.identity_file`"
            ) from None
        except (OSError, EOFError, SSHException) as exc:
            raise ConnectionError(f"{host.name} ({host.address}:{connection.port}) unreachable: {exc}") from None
        connection.client.get_transport().set_keepalive(max(1, int(options.keepalive)))
        return SshSession(connection, host, self.environment.command_timeout)

    @retry(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(3),
        wait=wait_random_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def _open(self, connection: Connection) -> None:
        try:
            with self._handshakes:
                connection.open()
        except BaseException:
            connection.close()
            raise


__all__ = ["SshTransport", "fingerprint"]
