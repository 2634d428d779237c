"""The dashboard's HTTP side (Starlette): who is asking, which page, which action. Every route
but the sign-in page and the static files needs a signed-in user; pages are rendered on the
server (jinja2, autoescaped) and read without JavaScript; one small script makes them live."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import ReleaserError, UsageError
from ..journal import Journal
from ..links import link_problem
from ..model import RELEASE_ID, Config
from ..store import Store
from ..terminal import shown_time
from . import actions, views
from .auth import COOKIE, PROXY_SECRET_HEADER, SIGNIN_COOKIE, Auth, Identity, SignInRefused
from .charts import evidence_chart
from .live import JournalFollower, Listener
from .words import LANGUAGES, message, phrase, state

HERE = Path(__file__).parent
MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
DONE_COOKIE = "releaser_done"  # what an action did, shown once on the page it leads to
MAX_FORM = 16 * 1024  # bytes of a form's body
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
REPORT_HEADERS = {  # an effect report as written: its own styles and inline images, nothing else
    **HEADERS,
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox",
}


class Dashboard:
    """What every request shares: the configuration, the state, the journal, sign-in, the follower."""

    def __init__(
        self,
        config: Config,
        store: Store,
        journal: Journal,
        secret: str,
        secure: bool = False,
        proxy_secret: str = "",
        warn: Callable[[str], None] = lambda _message: None,
    ):
        import jinja2

        assert config.dashboard is not None  # noqa: S101 - `serve` refuses a configuration without one
        self.config, self.store, self.journal = config, store, journal
        self.spec = config.dashboard
        self.secret, self.secure, self.warn = secret, secure, warn
        self.auth = Auth(self.spec, store, journal, secret, proxy_secret)
        self._stamp = _stamp(config.path)
        self._reloading = threading.Lock()
        self.follower = JournalFollower(store)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
        )
        self.templates.filters["when"] = shown_time
        self.templates.filters["pct"] = lambda v: "-" if v is None else f"{v:.2%}"

    def refresh(self) -> None:
        """Read the configuration again when its file changed: a user removed, a role taken away or
        a freeze added holds from the next request, without a restart. A file that no longer reads
        leaves the last good configuration in force, and says so once."""
        stamp = _stamp(self.config.path)
        if stamp == self._stamp:
            return
        with self._reloading:
            if stamp == self._stamp:
                return
            self._stamp = stamp
            from ..config import load_config, register_secrets
            from ..errors import ConfigError

            try:
                config = load_config(self.config.path)
            except ConfigError as exc:
                self.warn(f"{exc}\nthe dashboard goes on with the configuration it read before; fix the file")
                return
            if config.dashboard is None:
                self.warn(f"{config.path.name} lost its `dashboard:` section: the dashboard goes on with the last one")
                return
            register_secrets(config)
            self.config, self.spec = config, config.dashboard
            self.auth.spec = config.dashboard
            self.warn(f"{config.path.name} changed: read again (users, roles, freezes as written now)")

    # -- who is asking --

    async def identify(self, request: Request) -> Identity | None:
        self.refresh()  # a stat; the rare reload is quick enough to take on the loop
        header = self.spec.proxy_header
        header_user = request.headers.get(header) if header else None
        address = request.client.host if request.client else ""
        return await run_in_threadpool(
            self.auth.identify,
            request.cookies.get(COOKIE),
            header_user,
            address,
            request.headers.get(PROXY_SECRET_HEADER),
        )

    def language(self, request: Request) -> str:
        asked = request.query_params.get("lang") or request.cookies.get("lang")
        return asked if asked in LANGUAGES else (self.spec.language or self.config.report.language)

    # -- responses --

    def page(
        self, request: Request, template: str, identity: Identity | None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        language = self.language(request)
        done = request.cookies.get(DONE_COOKIE)
        html = self.templates.get_template(template).render(
            done=unquote(done)[:500] if done else None,
            status=status,
            t=lambda key, **values: phrase(language, key, **values),
            said=lambda value: state(language, value),
            m=lambda text: message(language, text),
            lang=language,
            other_language=LANGUAGES[1 - LANGUAGES.index(language)],
            me=identity,
            path=request.url.path,
            query=request.url.query,
            project=self.config.project,
            form_token=(lambda: self.auth.form_token(identity)) if identity else (lambda: ""),
            chart=evidence_chart,
            can=lambda action, environment: identity is not None and actions.allowed_on(identity, action, environment),
            stage_env=self.config.stage_environment,
            frozen=lambda environment: _frozen(self.config, environment),
            nav_environments=list(self.config.environments),
            **context,
        )
        response = HTMLResponse(html, status_code=status, headers=HEADERS)
        if done:
            response.delete_cookie(DONE_COOKIE, path="/")
        if request.query_params.get("lang") in LANGUAGES:
            response.set_cookie(
                "lang", language, max_age=365 * 86400, httponly=True, samesite="lax", secure=self.secure
            )
        return response

    def problem(self, request: Request, identity: Identity | None, status: int, message: str) -> HTMLResponse:
        return self.page(request, "problem.html", identity, status=status, message=message)


def build(dashboard: Dashboard) -> Starlette:
    d = dashboard

    async def signed_in(request: Request) -> Identity | Response:
        try:
            identity = await d.identify(request)
        except SignInRefused as refused:
            return d.problem(request, None, refused.status, str(refused))
        if identity is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/signin?{urlencode({'next': target})}", status_code=303, headers=HEADERS)
        return identity

    def reading(render):
        async def endpoint(request: Request) -> Response:
            who = await signed_in(request)
            if isinstance(who, Response):
                return who
            try:
                return await render(request, who)
            except views.NotFound as missing:
                return d.problem(request, who, 404, str(missing))
            except UsageError as bad:
                return d.problem(request, who, 400, str(bad))

        return endpoint

    async def overview(request: Request, who: Identity) -> Response:
        data = await run_in_threadpool(views.overview, d.config, d.store)
        return d.page(request, "overview.html", who, live={}, last=d.follower.last, **data)

    async def releases(request: Request, who: Identity) -> Response:
        asked = request.query_params.get("page", "1")
        page = int(asked) if asked.isdigit() and 0 < int(asked) < 10_000 else 1
        data = await run_in_threadpool(views.releases, d.config, d.store, page)
        return d.page(request, "releases.html", who, live={}, last=d.follower.last, **data)

    async def release(request: Request, who: Identity) -> Response:
        version = _version(request.path_params["version"])
        data = await run_in_threadpool(views.release, d.config, d.store, version)
        return d.page(request, "release.html", who, live={"release": version}, last=d.follower.last, **data)

    async def environment(request: Request, who: Identity) -> Response:
        name = request.path_params["name"]
        data = await run_in_threadpool(views.environment, d.config, d.store, name)
        return d.page(request, "environment.html", who, live={"env": name}, last=d.follower.last, **data)

    async def journal(request: Request, who: Identity) -> Response:
        filters = _journal_filters(request)
        data = await run_in_threadpool(views.journal, d.store, filters)
        live = {k: v for k, v in (("release", filters.get("release")), ("env", filters.get("env"))) if v}
        return d.page(request, "journal.html", who, live=live, last=d.follower.last, filters=filters, **data)

    async def reports(request: Request, who: Identity) -> Response:
        data = await run_in_threadpool(views.reports, d.config, d.store)
        return d.page(request, "reports.html", who, **data)

    async def report(request: Request, who: Identity) -> Response:
        version = _version(request.path_params["version"])
        found = await run_in_threadpool(d.store.get_report, version)
        path = Path(found.path) if found and found.path else d.config.reports_dir / version / "report.html"
        return _written_report(path, f"the effect report of {version}")

    async def service_report(request: Request, who: Identity) -> Response:
        environment, month = request.path_params["environment"], request.path_params["month"]
        if environment not in d.config.environments or not MONTH.fullmatch(month):
            raise views.NotFound(f"no service report of {environment[:64]!r} for {month[:16]!r}")
        path = d.config.reports_dir / "service" / environment / month / "report.html"
        return _written_report(path, f"the service report of {environment} for {month}")

    async def confirm(request: Request, who: Identity) -> Response:
        action = request.path_params["action"]
        params = request.query_params
        target = await run_in_threadpool(
            actions.target_of, d.config, d.store, action, params.get("release"), params.get("stage"), params.get("env")
        )
        if not actions.allowed(who, target):
            return d.problem(request, who, 403, actions.forbidden(who, target))
        plan = await _plan(d, target)
        return d.page(request, "confirm.html", who, target=target, error=None, plan=plan)

    async def act(request: Request) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        form = await _form(request)
        if form is None:
            return d.problem(request, who, 400, "the form is too large or not a form")
        problem = await run_in_threadpool(d.auth.spend_form, who, form.get("token", ""))
        if problem:
            return d.problem(request, who, 403, problem)
        action = request.path_params["action"]
        try:
            target = await run_in_threadpool(
                actions.target_of, d.config, d.store, action, form.get("release"), form.get("stage"), form.get("env")
            )
            if form.get("confirmed") != "yes":
                plan = await _plan(d, target)
                return d.page(request, "confirm.html", who, status=400, target=target, error="confirm first", plan=plan)
            said = await run_in_threadpool(
                actions.perform, d.config, d.store, d.journal, who, target, form.get("reason", "")
            )
        except actions.Forbidden as forbidden:
            return d.problem(request, who, 403, str(forbidden))
        except UsageError as bad:
            return d.problem(request, who, 400, str(bad))
        except ReleaserError as refused:  # the CLI's refusals: a freeze, not_by_promoter, a lock held
            return d.problem(request, who, 409, str(refused))
        # after a post, a page to get: reloading it never sends the form again; it says what was done, once
        back = f"/releases/{target.release}" if target.release else f"/environments/{target.environment}"
        response = RedirectResponse(back, status_code=303, headers=HEADERS)
        response.set_cookie(DONE_COOKIE, quote(said[:500]), max_age=60, httponly=True, samesite="lax", secure=d.secure)
        return response

    async def approval_link(request: Request, who: Identity) -> Response:
        params = request.query_params
        request_id = request.path_params["request"]
        release, stage = _version(params.get("release", "")), params.get("stage", "")
        problem = link_problem(d.secret, request_id, release, stage, params.get("until", ""), params.get("sig", ""))
        if problem:
            status, why = problem
            return d.problem(request, who, status, f"{why}: open {release} from the dashboard")
        found = next((a for a in await run_in_threadpool(d.store.approvals, release) if a.id == request_id), None)
        if found is None or found.stage != stage:
            return d.problem(request, who, 404, f"no approval request {request_id} for {stage} of {release}")
        if found.state != "awaiting":
            return d.problem(request, who, 409, f"{stage} of {release} was {found.state} by {found.decided_by} already")
        target = actions.Target("approve", d.config.stage_environment(stage) or "", release, stage)
        if not actions.allowed(who, target):
            return d.problem(request, who, 403, actions.forbidden(who, target))
        return d.page(request, "confirm.html", who, target=target, error=None, both=True, plan=None)

    def signin_form(request: Request, target: str, status: int = 200, error: str | None = None) -> Response:
        nonce, token = d.auth.signin_form()
        response = d.page(request, "signin.html", None, status=status, next=target, error=error, signin_token=token)
        response.set_cookie(
            SIGNIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict", secure=d.secure, path="/signin"
        )
        return response

    async def signin_page(request: Request) -> Response:
        return signin_form(request, _next(request.query_params.get("next")))

    async def signin(request: Request) -> Response:
        form = await _form(request) or {}
        address = request.client.host if request.client else ""
        target = _next(form.get("next"))
        problem = d.auth.signin_problem(request.cookies.get(SIGNIN_COOKIE), form.get("token", ""))
        if problem:
            return signin_form(request, target, 403, problem)
        try:
            token = await run_in_threadpool(d.auth.sign_in, form.get("user", ""), form.get("password", ""), address)
        except SignInRefused as refused:
            return signin_form(request, target, refused.status, str(refused))
        response = RedirectResponse(target, status_code=303, headers=HEADERS)
        response.set_cookie(
            COOKIE, token, max_age=int(d.spec.session), httponly=True, samesite="lax", secure=d.secure, path="/"
        )
        response.delete_cookie(SIGNIN_COOKIE, path="/signin")
        return response

    async def signout(request: Request) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        form = await _form(request) or {}
        problem = await run_in_threadpool(d.auth.spend_form, who, form.get("token", ""))
        if problem:
            return d.problem(request, who, 403, problem)
        token = request.cookies.get(COOKIE)
        if token:
            await run_in_threadpool(d.auth.sign_out, token)
        response = RedirectResponse("/signin", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def live(request: Request) -> Response:
        try:
            who = await d.identify(request)
        except SignInRefused as refused:
            return PlainTextResponse(str(refused), status_code=refused.status)
        if who is None:
            return PlainTextResponse("sign in first", status_code=401)
        params = request.query_params
        after = int(params["after"]) if params.get("after", "").isdigit() else d.follower.last
        listener = Listener(asyncio.get_running_loop(), params.get("release"), params.get("env"))
        d.follower.listen(listener)
        missed = [
            e
            for e in await run_in_threadpool(d.store.find_events, None, None, None, None, after)
            if listener.concerns(e)
        ]

        async def stream():
            try:
                if missed:
                    yield _sse(missed[::-1])
                while True:
                    try:
                        events = await asyncio.wait_for(listener.queue.get(), timeout=15)
                    except TimeoutError:
                        yield ": still here\n\n"
                        continue
                    yield _sse(events)
            finally:
                d.follower.leave(listener)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={**HEADERS, "X-Accel-Buffering": "no"}
        )

    routes = [
        Route("/", reading(overview)),
        Route("/releases", reading(releases)),
        Route("/releases/{version}", reading(release)),
        Route("/environments/{name}", reading(environment)),
        Route("/journal", reading(journal)),
        Route("/reports", reading(reports)),
        Route("/reports/service/{environment}/{month}", reading(service_report)),
        Route("/reports/{version}", reading(report)),
        Route("/act/{action}", reading(confirm)),
        Route("/act/{action}", act, methods=["POST"]),
        Route("/approvals/{request:int}", reading(approval_link)),
        Route("/signin", signin_page),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/live", live),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        d.follower.start()
        try:
            yield
        finally:
            d.follower.stop()

    return Starlette(routes=routes, lifespan=lifespan)


async def _plan(d: Dashboard, target: actions.Target) -> dict | None:
    """What the confirmation shows of what will happen: a rollback's plan, from asking the hosts;
    the lock an unlock clears, and whether its holder is gone; an approval's request and evidence
    (None for an abort)."""
    if target.action in ("approve", "reject") and target.release and target.stage:
        return await run_in_threadpool(views.approval_plan, d.config, d.store, target.release, target.stage)
    if target.action == "rollback":
        return await run_in_threadpool(views.rollback_plan, d.config, d.store, d.journal, target.environment)
    if target.action == "unlock":
        from ..processes import is_stale

        held = await run_in_threadpool(d.store.get_lock, target.environment)
        return {"lock": held, "stale": held is not None and is_stale(held)}
    return None


def _frozen(config: Config, environment: str | None) -> bool:
    """Whether a freeze holds the environment now (an approval would be refused)."""
    if not config.freezes or not environment:
        return False
    from ..freezes import frozen

    return frozen(config.freezes, environment) is not None


def _stamp(path: Path) -> tuple[int, int] | None:
    """When the file was last written, and its size: what tells a changed configuration."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _written_report(path: Path, what: str) -> Response:
    """A report's HTML copy as written: its own styles and inline charts, sandboxed."""
    if not path.is_file():
        raise views.NotFound(f"{what} has not been written on this machine yet")
    return HTMLResponse(path.read_text(encoding="utf-8"), headers=REPORT_HEADERS)


def _sse(events: list) -> str:
    last = events[-1]
    data = json.dumps({"id": last.id, "kinds": sorted({e.kind for e in events})})
    return f"id: {last.id}\ndata: {data}\n\n"


async def _form(request: Request) -> dict[str, str] | None:
    """A urlencoded form's fields (the dashboard posts nothing else), or None when too large."""
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _version(text: str) -> str:
    if not RELEASE_ID.fullmatch(text):
        raise UsageError(f"not a release version: {text[:40]!r}")
    return text


def _next(target: str | None) -> str:
    """Where to go after signing in: a path on this dashboard only."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _journal_filters(request: Request) -> dict[str, Any]:
    params = request.query_params
    before = params.get("before", "")
    return {
        "release": params.get("release", "")[:64],
        "env": params.get("env", "")[:64],
        "kind": params.get("kind", "")[:64],
        "q": params.get("q", "")[:200],
        "before": int(before) if before.isdigit() else None,
    }
