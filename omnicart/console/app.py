"""The console's FastAPI app: server-rendered pages (Jinja2, htmx), vendored scripts, no CDN.

It reads what the product already keeps (registry, analytics, projection, event log, ledger) and asks
Temporal only for one customer's ``state`` query when that customer's page is opened. It runs on its
own listener (``omnicart console``, or beside the API in ``omnicart dev``), never in the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from omnicart.analytics.report import JourneyReport
from omnicart.analytics.rollup_report import rollup_journey_report
from omnicart.analytics.rollups import fold, fold_every, folded_at
from omnicart.consent.history import ConsentHistory
from omnicart.console.auth import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    LoginRequired,
    LoginThrottle,
    changing_session,
    current_session,
    posting_session,
)
from omnicart.console.customers import carts_of, consent_provenance, customer_state, runs_of, timeline
from omnicart.console.diagram import describe_step, mermaid_flowchart, step_counts
from omnicart.console.journeys import check_source, journey_source, journey_summaries
from omnicart.console.preview import TimelineError, parse_timeline, preview, sample_timelines
from omnicart.console.test_sends import TestSendError, send_choices, send_test
from omnicart.console.users import ConsoleUsers, Session
from omnicart.customers.profiles import CustomerProfile, CustomerProfiles
from omnicart.journey.registry import JourneyRegistry, Published, UnknownJourney
from omnicart.journey_exit import exit_runs as exit_runs_of
from omnicart.routing import customer_workflow_id
from omnicart.settings import Settings
from omnicart.storage import get_engine

HERE = Path(__file__).parent
logger = logging.getLogger(__name__)
DEFAULT_PERIOD_DAYS = 30
FOLD_EVERY_SECONDS = 5.0
"""How often the console folds new analytics rows into the report tables (and how stale a page can be)."""
SAMPLE_EVENTS = Path("examples/events.jsonl")

SessionDep = Annotated[Session, Depends(current_session)]
ChangeDep = Annotated[Session, Depends(changing_session)]
PostDep = Annotated[Session, Depends(posting_session)]


def create_console_app(settings: Settings, client: Client | None = None) -> FastAPI:
    """The console for this product database; ``client`` (optional) answers customers' runs."""
    engine = get_engine(settings.database())
    registry = JourneyRegistry(engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Off the worker's path: the raw rows it writes are summed here, in the console's process.
        app.state.first_fold = asyncio.Event()
        folding = asyncio.create_task(fold_every(engine, FOLD_EVERY_SECONDS, app.state.first_fold))
        published_now = await asyncio.to_thread(registry.published)
        checking = asyncio.create_task(start_up(app.state.first_fold, published_now))
        app.state.started = checking  # done: the start-up work is over (the page-load benchmark waits for it)
        yield
        checking.cancel()
        folding.cancel()

    async def start_up(first_fold: asyncio.Event, published_now: dict[str, Published]) -> None:
        """What the first page of each kind would otherwise do on a marketer's time: check the journeys'
        files, and, once the first fold is over, read each journey's numbers for the default period
        once, so statements are compiled and the statistics code is loaded (the numbers themselves are
        not kept: every page reads them again), and compile the pages' templates."""
        await asyncio.to_thread(_check_all, settings.journeys_dir, published_now)
        await first_fold.wait()
        start, end = _period(None, None)
        for item in published_now.values():
            await asyncio.to_thread(rollup_journey_report, engine, item.name, since=start, until=end,
                                    bundle=item.bundle)
        await asyncio.to_thread(journey_summaries, registry, engine, start, end)
        for name in ("journeys.html", "journey.html"):
            templates.env.get_template(name)

    app = FastAPI(title="omnicart console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.users = ConsoleUsers(engine)
    app.state.throttle = LoginThrottle()
    app.state.exiting = set()  # pauses telling customers' workflows to end their runs (held, not collected)

    def _told(task: asyncio.Task[int]) -> None:
        app.state.exiting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("telling customers' workflows to end a paused journey's runs failed: pause again to "
                         "finish (it is idempotent)", exc_info=task.exception())
    profiles = CustomerProfiles(engine, settings.signing_secret)
    consent_history = ConsentHistory(engine, settings.signing_secret)
    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(request: Request, name: str, session: Session | None, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"session": session, "csrf_field": CSRF_FIELD, **context},
                                          status_code=status)

    async def numbers_ready(request: Request) -> None:
        """Wait for the console's first fold, so an upgraded database's rows are summed before a page
        reads them; an app served without its lifespan (a test client outside ``with``) folds here."""
        first: asyncio.Event | None = getattr(request.app.state, "first_fold", None)
        if first is None:
            await asyncio.to_thread(fold, engine)
        else:
            await first.wait()

    def published(name: str) -> Published:
        item = registry.published().get(name)
        if item is None:
            raise HTTPException(404, f"no journey named {name!r} is published")
        return item

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _exc: LoginRequired) -> Response:
        if request.method != "GET":
            return HTMLResponse("Your session has ended: log in again.", status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def error_page(request: Request, exc: StarletteHTTPException) -> Response:
        return page(request, "error.html", None, status=exc.status_code, message=exc.detail)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    # -- login ---------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> Response:
        token = secrets.token_urlsafe(32)
        response = page(request, "login.html", None, login_csrf=token, next=_local(next), error=None)
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                            secure=settings.console_secure_cookies)
        return response

    @app.post("/login")
    def login(
        request: Request,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        csrf_token: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected or not secrets.compare_digest(expected, csrf_token):
            raise HTTPException(403, "the login form expired: reload the page and try again")
        client = request.client.host if request.client else "unknown"
        throttle: LoginThrottle = app.state.throttle
        if throttle.blocked(client, username):
            return page(request, "login.html", None, status=429, login_csrf=expected, next=_local(next),
                        error="Too many failed attempts: wait a few minutes and try again.")
        user = app.state.users.authenticate(username, password)
        if user is None:
            throttle.failed(client, username)
            return page(request, "login.html", None, status=401, login_csrf=expected, next=_local(next),
                        error="Wrong user name or password.")
        throttle.succeeded(client, username)
        token, _session = app.state.users.start_session(user)
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax",
                            secure=settings.console_secure_cookies,
                            max_age=int(timedelta(hours=12).total_seconds()))
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    @app.post("/logout")
    async def logout(request: Request, session: PostDep) -> Response:
        app.state.users.end_session(request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # -- journeys ------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def journeys_page(
        request: Request, session: SessionDep, since: str | None = None, until: str | None = None
    ) -> Response:
        start, end = _period(since, until)
        await numbers_ready(request)
        as_of = await asyncio.to_thread(folded_at, engine)
        summaries = await asyncio.to_thread(journey_summaries, registry, engine, start, end)
        return page(request, "journeys.html", session, summaries=summaries, since=start.date().isoformat(),
                    until=(end - timedelta(days=1)).date().isoformat(), as_of=as_of, fold_every=FOLD_EVERY_SECONDS)

    @app.get("/journeys/{name}", response_class=HTMLResponse)
    async def journey_page(
        request: Request, session: SessionDep, name: str, since: str | None = None, until: str | None = None,
        tested: str | None = None,
    ) -> Response:
        item = published(name)
        start, end = _period(since, until)
        await numbers_ready(request)
        report = await asyncio.to_thread(journey_report, item, start, end)
        source = check_source(settings.journeys_dir, name, journey_source(settings.journeys_dir, item.bundle))
        notice = f"Test of {tested} sent (marked [TEST], counted nowhere)." if tested else None
        return journey_view(request, session, item, report, source, start, end, notice=notice)

    def journey_report(item: Published, start: datetime, end: datetime) -> tuple[JourneyReport | None, datetime | None]:
        """The journey's numbers for the period, and as of when (the last fold)."""
        as_of = folded_at(engine)
        return rollup_journey_report(engine, item.name, since=start, until=end, bundle=item.bundle), as_of

    def journey_view(request: Request, session: Session, item: Published,
                     numbers: tuple[JourneyReport | None, datetime | None], source: Any,
                     start: datetime, end: datetime, status: int = 200, notice: str | None = None) -> HTMLResponse:
        report, as_of = numbers
        stats = {group.key: group for group in report.groups if group.key} if report else {}
        journey = item.bundle.journey
        steps = [(step_id, describe_step(step), step_counts(step, stats.get(step_id)))
                 for step_id, step in zip(journey.step_ids(), journey.steps, strict=True)]
        return page(request, "journey.html", session, status=status, status_code=status, item=item, report=report,
                    steps=steps,
                    diagram=mermaid_flowchart(journey, stats), source=source, notice=notice, as_of=as_of,
                    fold_every=FOLD_EVERY_SECONDS,
                    since=start.date().isoformat(), until=(end - timedelta(days=1)).date().isoformat(),
                    changes=list(reversed(registry.changes(item.name)))[:20], choices=send_choices(item.bundle),
                    audit=app.state.users.audit(item.name, limit=20))

    @app.post("/journeys/{name}/publish", response_class=HTMLResponse)
    async def publish(request: Request, session: ChangeDep, name: str, source: Annotated[str, Form()]) -> Response:
        item = published(name)
        checked = await asyncio.to_thread(check_source, settings.journeys_dir, name, source)
        start, end = _period(None, None)
        if checked.bundle is None:
            report = await asyncio.to_thread(journey_report, item, start, end)
            return journey_view(request, session, item, report, checked, start, end, status=422,
                                notice=f"Not published: {len(checked.problems)} problem(s), shown on their lines.")
        changed = registry.publish([checked.bundle], session.user.username)
        if changed:
            app.state.users.record(session.user, "published", name, checked.bundle.version)
        return RedirectResponse(f"/journeys/{name}", status_code=303)

    @app.post("/journeys/{name}/test-send")
    async def test_send(
        request: Request, session: ChangeDep, name: str, message: Annotated[str, Form()], to: Annotated[str, Form()]
    ) -> Response:
        """Send one step's message to the marketer's own address, marked as a test, counted nowhere."""
        item = published(name)
        try:
            delivery = await send_test(settings, item.bundle, message, to, session.user.username)
        except TestSendError as exc:
            raise HTTPException(422, str(exc)) from None
        app.state.users.record(session.user, "test_send", name, item.version, f"{message} via {delivery.provider}")
        return RedirectResponse(f"/journeys/{name}?tested={message}", status_code=303)

    @app.post("/journeys/{name}/{change}")
    async def pause_or_resume(
        session: ChangeDep, name: str, change: Literal["pause", "resume"],
        runs: Annotated[Literal["go_on", "exit"], Form()] = "go_on",
    ) -> Response:
        """Pause (no new entries; runs under way go on, or exit) or resume, recorded with who did it."""
        exit_runs = change == "pause" and runs == "exit"
        if exit_runs and client is None:
            raise HTTPException(503, "Temporal is not connected to this console: runs under way cannot be told to exit")
        try:
            if change == "pause":
                changed = registry.pause(name, session.user.username, exit_runs=exit_runs)
            else:
                changed = registry.resume(name, session.user.username)
        except UnknownJourney as exc:
            raise HTTPException(404, str(exc)) from None
        if changed:
            detail = None if change == "resume" else "runs under way exit" if exit_runs else \
                "no new entries; runs under way go on"
            app.state.users.record(session.user, f"{change}d", name, published(name).version, detail)
        if exit_runs and client is not None:
            # In the background, paced: the page answers at once; a repeat of the pause repeats it harmlessly.
            telling = asyncio.create_task(exit_runs_of(client, settings.task_queue, name, datetime.now(UTC),
                                                       per_second=settings.journey_exit_rate))
            app.state.exiting.add(telling)
            telling.add_done_callback(_told)
        return RedirectResponse(f"/journeys/{name}", status_code=303)

    # -- customers -----------------------------------------------------------------------------

    @app.get("/customers", response_class=HTMLResponse)
    async def customers_page(request: Request, session: SessionDep, q: str = "") -> Response:
        found: list[CustomerProfile] = []
        if q.strip():
            found = (await asyncio.to_thread(profiles.search, q, None, 50)).customers
        return page(request, "customers.html", session, q=q, found=found)

    @app.get("/customers/{customer_id:path}", response_class=HTMLResponse)
    async def customer_page(request: Request, session: SessionDep, customer_id: str) -> Response:
        profile = await asyncio.to_thread(profiles.find_by_id, customer_id)
        if profile is None:
            raise HTTPException(404, "no customer with that id is known to the profile projection")
        state = await customer_state(client, customer_workflow_id(customer_id))
        entries = await asyncio.to_thread(timeline, engine, customer_id)
        consent = await asyncio.to_thread(consent_provenance, consent_history, customer_id)
        return page(request, "customer.html", session, profile=profile, customer_id=customer_id, consent=consent,
                    runs=runs_of(state, engine), carts=carts_of(state), workflow_known=state is not None,
                    temporal=client is not None, entries=entries)

    # -- preview -------------------------------------------------------------------------------

    @app.get("/preview", response_class=HTMLResponse)
    async def preview_form(request: Request, session: SessionDep, journey: str = "", sample: str = "") -> Response:
        samples = sample_timelines(SAMPLE_EVENTS)
        return page(request, "preview.html", session, journeys=sorted(registry.published()), journey=journey,
                    samples=samples, sample=sample, timeline=samples.get(sample, ""), lines=None, error=None)

    @app.post("/preview", response_class=HTMLResponse)
    async def run_preview(
        request: Request, session: PostDep, timeline_text: Annotated[str, Form(alias="timeline")],
        journey: Annotated[str, Form()] = "", sample: Annotated[str, Form()] = "",
    ) -> Response:
        samples = sample_timelines(SAMPLE_EVENTS)
        bundles = [item.bundle for item in registry.published().values()]
        try:
            events = parse_timeline(timeline_text)
            lines = await asyncio.to_thread(preview, bundles, events, journey or None)
            error = None
        except TimelineError as exc:
            lines, error = None, str(exc)
        return page(request, "preview.html", session, status=200 if error is None else 422,
                    journeys=sorted(registry.published()), journey=journey, samples=samples, sample=sample,
                    timeline=timeline_text, lines=lines, error=error)

    return app


def _check_all(journeys_dir: Path, published: dict[str, Published]) -> None:
    """Check every published journey's file once, so the first view of each finds the answer kept."""
    for name, item in published.items():
        check_source(journeys_dir, name, journey_source(journeys_dir, item.bundle))


def _local(target: str) -> str:
    """Only a path on this console: a login link must not send anyone elsewhere."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _period(since: str | None, until: str | None) -> tuple[datetime, datetime]:
    """[since, until] as whole UTC days (until inclusive); the last 30 days by default."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = _day(until, today) + timedelta(days=1)
    start = _day(since, end - timedelta(days=DEFAULT_PERIOD_DAYS))
    if start >= end:
        raise HTTPException(422, "the period's start must be on or before its end")
    return start, end


def _day(text: str | None, default: datetime) -> datetime:
    if not text:
        return default
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC, hour=0, minute=0, second=0, microsecond=0)
    except ValueError:
        raise HTTPException(422, f"not a date: {text!r} (use YYYY-MM-DD)") from None


