"""Who is asking: sign-in by password (a slow hash, throttled) or by the header of an
authenticating proxy (believed only from its configured addresses); sessions in the state
(a cookie carries a random token, the state its hash); one-time form tokens against
cross-site requests."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets as tokens
import time
from datetime import UTC, datetime, timedelta

from ..events import Event
from ..journal import Journal
from ..model import DashboardSpec, DashboardUser
from ..passwords import check_password
from ..store import Store

COOKIE = "releaser_session"
SIGNIN_COOKIE = "releaser_signin"  # the sign-in form's own nonce: a form posted from elsewhere lacks it
PROXY_SECRET_HEADER = "X-Releaser-Proxy"  # noqa: S105 - a header's name. The authenticating proxy's secret, sent with the user's name
# failed sign-ins within THROTTLE_WINDOW before a user name is refused for a while from that address (a
# user is never locked out by someone else's guesses elsewhere), and before an address is refused for any name
FAILURES_PER_USER = 5
FAILURES_PER_ADDRESS = 20
THROTTLE_WINDOW = 15 * 60.0
FORM_LASTS = 3600.0  # a form's token: long enough to read a page and decide


class SignInRefused(Exception):
    """Why a sign-in or a request's identity is refused, in words for the page; `status` the HTTP code."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


class Identity:
    """A signed-in user and the session (or proxy sign-in) the request carries."""

    def __init__(self, user: DashboardUser, session: str, via: str):
        self.user, self.session, self.via = user, session, via

    @property
    def name(self) -> str:
        return self.user.name


class Auth:
    def __init__(self, spec: DashboardSpec, store: Store, journal: Journal, secret: str, proxy_secret: str = ""):
        self.spec, self.store, self.journal, self.secret = spec, store, journal, secret
        self.proxy_secret = proxy_secret
        self._proxied_seen: set[str] = set()  # users this server has journaled as signed in through the proxy

    # -- password sign-in and sessions --

    def sign_in(self, username: str, password: str, address: str) -> str:
        """A new session's token for the cookie; SignInRefused when throttled or wrong."""
        username = username.strip()[:100]
        since = (datetime.now(UTC) - timedelta(seconds=THROTTLE_WINDOW)).isoformat(timespec="milliseconds")
        by_user, by_address = self.store.failed_signins(since, username, address)
        if by_user >= FAILURES_PER_USER or by_address >= FAILURES_PER_ADDRESS:
            if by_user == FAILURES_PER_USER or by_address == FAILURES_PER_ADDRESS:
                self.store.record_signin(username, address, ok=False)  # journaled once per episode
                self.journal.record(
                    Event.SIGNIN_THROTTLED,
                    f"sign-ins as {username} from {address} refused for {THROTTLE_WINDOW / 60:.0f} minutes after "
                    "repeated failures",
                    data={"user": username, "address": address},
                )
            who = f"as {username} " if by_user >= FAILURES_PER_USER else ""
            raise SignInRefused(
                f"too many failed sign-ins {who}from this address: try again in {THROTTLE_WINDOW / 60:.0f} minutes",
                429,
            )
        user = self.spec.users.get(username)
        good = check_password(password, user.password if user else None)
        self.store.record_signin(username, address, ok=good)
        if not good or user is None:
            raise SignInRefused("wrong user name or password", 401)
        return self._start(user, "password", address)

    def _start(self, user: DashboardUser, via: str, address: str) -> str:
        token = tokens.token_urlsafe(32)
        until = datetime.now(UTC) + timedelta(seconds=self.spec.session)
        self.store.start_session(_digest(token), user.name, via, address, until.isoformat(timespec="milliseconds"))
        self.journal.record(
            Event.SIGNED_IN,
            f"{user.name} signed in to the dashboard ({via}, from {address})",
            data={"user": user.name, "via": via, "address": address},
        )
        return token

    def sign_out(self, token: str) -> None:
        self.store.end_session(_digest(token))

    def identify(
        self, token: str | None, header_user: str | None, address: str, proxy_secret: str | None = None
    ) -> Identity | None:
        """Who the request is from: the proxy's header (only from the proxy, with its secret),
        else the session cookie; None when nobody is signed in. SignInRefused for a header from
        elsewhere or without the secret, or a user the configuration does not name."""
        if header_user is not None:
            return self._proxied(header_user.strip(), address, proxy_secret or "")
        if not token:
            return None
        session = self.store.get_session(_digest(token))
        if session is None or not session.live():
            return None
        user = self.spec.users.get(session.username)
        return None if user is None else Identity(user, session.id, session.via)

    def from_proxy(self, address: str) -> bool:
        try:
            client = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(client in ipaddress.ip_network(network) for network in self.spec.proxy_from)

    def _proxied(self, username: str, address: str, proxy_secret: str) -> Identity:
        if not self.from_proxy(address):
            raise SignInRefused(
                f"the sign-in header {self.spec.proxy_header} came from {address}, which is not the proxy "
                "(dashboard.proxy.from): refused"
            )
        if not self.proxy_secret or not hmac.compare_digest(proxy_secret.encode(), self.proxy_secret.encode()):
            raise SignInRefused(
                f"the sign-in header {self.spec.proxy_header} came without the proxy's secret ({PROXY_SECRET_HEADER}, "
                "dashboard.proxy.secret_env): refused; sign in through the proxy"
            )
        user = self.spec.users.get(username)
        if user is None:
            raise SignInRefused(f"{username[:100]} is not a dashboard user: ask to be added under dashboard.users")
        if user.name not in self._proxied_seen:  # once per user and server: the proxy signs in every request
            self._proxied_seen.add(user.name)
            self.journal.record(
                Event.SIGNED_IN,
                f"{user.name} signed in to the dashboard (through the proxy, from {address})",
                data={"user": user.name, "via": "proxy", "address": address},
            )
        return Identity(user, "proxy:" + _digest(user.name), "proxy")

    # -- the sign-in form (before any session: a form from another site must not sign someone in as its author) --

    def signin_form(self) -> tuple[str, str]:
        """A nonce for the browser's cookie and the token the sign-in form carries for it."""
        nonce = tokens.token_urlsafe(16)
        return nonce, self._signin_mac(nonce)

    def signin_problem(self, nonce: str | None, token: str) -> str | None:
        if not nonce or not hmac.compare_digest(self._signin_mac(nonce), token):
            return "this sign-in form is not one this page gave (or cookies are off): reload the sign-in page"
        return None

    def _signin_mac(self, nonce: str) -> str:
        return hmac.new(self.secret.encode(), f"signin\n{nonce}".encode(), hashlib.sha256).hexdigest()

    # -- forms --

    def form_token(self, identity: Identity, now: float | None = None) -> str:
        nonce, until = tokens.token_urlsafe(16), int((time.time() if now is None else now) + FORM_LASTS)
        return f"{nonce}.{until}.{self._mac(identity.session, nonce, until)}"

    def spend_form(self, identity: Identity, token: str, now: float | None = None) -> str | None:
        """Why the form cannot be taken (missing, forged, expired, used already), or None once spent."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return "the form's token is missing: reload the page and confirm again"
        nonce, until, mac = parts
        if not hmac.compare_digest(self._mac(identity.session, nonce, int(until)), mac):
            return "the form's token is not this session's: reload the page and confirm again"
        if int(until) < (time.time() if now is None else now):
            return "the form is too old: reload the page and confirm again"
        if not self.store.spend_form(nonce, identity.session):
            return "this form was sent already (a repeated request): reload the page to act again"
        return None

    def _mac(self, session: str, nonce: str, until: int) -> str:
        return hmac.new(self.secret.encode(), f"form\n{session}\n{nonce}\n{until}".encode(), hashlib.sha256).hexdigest()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
