"""The ingest API: the HTTP door through which shops, apps and providers hand us events.

``POST /v1/events`` is deliberately all-or-nothing per request: every envelope of a batch is
validated before anything is recorded or forwarded, so a producer that gets ``422`` can fix the
named fields and resend the whole batch without wondering what already went in. The body is read
by hand (not by FastAPI's model binding) so that the size limit holds for chunked bodies too and
errors come back in one shape that names the event's index and the field.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, ValidationError
from pydantic.json_schema import models_json_schema
from pydantic_core import ErrorDetails
from sqlalchemy import Engine
from temporalio.client import Client

from omnicart import limits
from omnicart.analytics.outcomes import outcomes_of
from omnicart.analytics.store import record_outcomes
from omnicart.api import channel_health, sendgrid_webhook, twilio_webhooks, unsubscribe, whatsapp_webhooks
from omnicart.api.customers import customers_router
from omnicart.api.event_log import EventLog
from omnicart.api.ingest import ForwardingFailed, Ingest, IngestResult, JourneySource, TemporalUnavailable
from omnicart.api.stats import stats_router
from omnicart.api.unsubscribe import warn_about_public_defaults
from omnicart.api.webhook_inbox import InboxDrainer
from omnicart.connectors.api import connectors_router
from omnicart.consent import preferences
from omnicart.consent.api import consent_router
from omnicart.consent.history import ConsentHistory
from omnicart.customers.profiles import CustomerProfiles
from omnicart.events import Event, describe_error
from omnicart.fanout import BACK_IN_STOCK, PRICE_DROPPED
from omnicart.journey.model import DATE_REACHED
from omnicart.journey.registry import JourneyRegistry, PublishedJourneys
from omnicart.ledger import MessageLedger
from omnicart.observability import RequestSpans, configure_tracing, count_rejected
from omnicart.privacy.api import forget_router
from omnicart.security.codec_server import codec_app
from omnicart.settings import Settings, get_settings
from omnicart.storage import get_engine, require_current
from omnicart.temporal import connect, payload_codec

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT = timedelta(seconds=3)
RETRY_AFTER_SECONDS = "5"


class Problem(BaseModel):
    """One thing wrong with a request body."""

    index: int | None = Field(description="Position of the event in the batch (0 for a single envelope).")
    field: str = Field(description="Where in the event, e.g. `timestamp` or `properties.items[0].price`.")
    message: str


class Problems(BaseModel):
    """Why a request body was refused; nothing of it was applied."""

    errors: list[Problem]


class Detail(BaseModel):
    detail: str


class EventBatch(BaseModel):
    """Several envelopes in one request, accepted or refused as a whole."""

    events: list[Event]


class Rejected(Exception):
    """A request refused before anything was recorded: answered with ``status`` and a problem list."""

    def __init__(self, status: int, problems: list[Problem]) -> None:
        super().__init__(status, problems)
        self.status = status
        self.problems = problems


def create_app(
    settings: Settings,
    client: Client | None = None,
    catalog: JourneySource | None = None,
) -> FastAPI:
    """The ingest API with the provider webhooks.

    With ``client`` given (tests, ``omnicart dev``) everything is ready at once; without it the
    lifespan opens a lazy connection from the environment (``omnicart.temporal.connect``), so the
    API starts, and answers ``503``, even while Temporal is down. Journeys come from the journey
    registry in the shared database (``omnicart publish``) unless ``catalog`` says otherwise.
    """
    engine = get_engine(settings.database())
    journeys = catalog if catalog is not None else PublishedJourneys(JourneyRegistry(engine))
    event_log = EventLog(engine)

    def prepare(temporal: Client) -> None:
        app.state.temporal = temporal
        app.state.ingest = Ingest(temporal, settings.task_queue, journeys, event_log, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Refuse to start on a database that was not migrated (`omnicart db upgrade`): the server
        # exits with that message instead of answering 500 to every event.
        await asyncio.to_thread(require_current, engine)
        if getattr(app.state, "ingest", None) is None:
            temporal = await connect(settings, lazy=True, serve_metrics=True)
            prepare(temporal)
        warn_about_public_defaults(settings, "api")
        # Provider webhooks stored while Temporal was unreachable are applied once it is back.
        stop_draining = asyncio.Event()
        drainer = asyncio.create_task(InboxDrainer(app.state).run(stop_draining))
        try:
            yield
        finally:
            stop_draining.set()
            await drainer

    app = FastAPI(
        title="omnicart ingest API",
        version="0.1.0",
        description="Send events (web, app, store, providers) to omnicart's journeys.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.catalog = journeys
    app.state.event_log = event_log
    app.state.ledger = MessageLedger(engine)
    app.state.ingest = None
    if client is not None:
        prepare(client)

    _add_error_handlers(app)
    _add_routes(app, settings)
    app.add_middleware(RequestSpans)
    app.include_router(sendgrid_webhook.router)
    app.include_router(unsubscribe.router)
    app.include_router(twilio_webhooks.router)
    app.include_router(whatsapp_webhooks.router)
    app.include_router(channel_health.router)
    app.include_router(forget_router(_require_token))
    app.include_router(customers_router(_require_token, CustomerProfiles(engine, settings.signing_secret)))
    app.include_router(stats_router(_require_token, engine))
    app.include_router(consent_router(_require_token, ConsentHistory(engine, settings.signing_secret)))
    app.include_router(preferences.router)
    app.include_router(connectors_router(_require_token, settings))
    # Uncached keys: a person reading a forgotten customer's history finds it unreadable at once.
    app.mount("/codec", codec_app(settings, payload_codec(settings.model_copy(update={"data_key_cache_seconds": 0}))))
    _document_event_schemas(app)
    return app


_bearer = HTTPBearer(auto_error=False, description="Required when OMNICART_API_TOKEN is set.")


def _require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries the configured bearer token (compared in constant time)."""
    token = request.app.state.settings.api_token
    if token is None:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    if not secrets.compare_digest(given, token.get_secret_value().encode()):
        count_rejected(401, "token")
        raise HTTPException(
            status_code=401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def _add_error_handlers(app: FastAPI) -> None:
    async def rejected(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Rejected)
        for reason in _reasons(exc.problems):
            count_rejected(exc.status, reason)
        return JSONResponse(Problems(errors=exc.problems).model_dump(), status_code=exc.status)

    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # Every route that ingests (webhooks included) answers 503 the same way: producers retry.
        count_rejected(503, "temporal_unavailable" if isinstance(exc, TemporalUnavailable) else "forwarding_failed")
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS})

    app.add_exception_handler(Rejected, rejected)
    app.add_exception_handler(ForwardingFailed, unavailable)


_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/Event"},
                    {"$ref": "#/components/schemas/EventBatch"},
                ]
            },
            "example": {
                "id": "evt_01HX3Z9",
                "type": "checkout_started",
                "customer_id": "cus_42",
                "timestamp": "2026-11-22T10:00:00+03:00",
                "source": "web",
                "properties": {"cart_id": "cart_7", "items": [{"sku": "MUG-1", "quantity": 1}]},
            },
        }
    },
}


def _add_routes(app: FastAPI, settings: Settings) -> None:
    @app.post(
        "/v1/events",
        status_code=202,
        response_model=IngestResult,
        dependencies=[Depends(_require_token)],
        openapi_extra={"requestBody": _REQUEST_BODY},
        responses={
            401: {"model": Detail, "description": "Missing or wrong bearer token."},
            413: {
                "model": Problems,
                "description": f"Body over the size limit, or more than {settings.max_batch_events} events.",
            },
            422: {"model": Problems, "description": "Malformed events; nothing of the batch was applied."},
            503: {"model": Detail, "description": "Not all events were forwarded; send the same events again."},
        },
        summary="Send one event or a batch",
    )
    async def post_events(request: Request) -> IngestResult:
        """Accept one envelope or `{"events": [...]}`.

        Ids already accepted count as duplicates and are ignored. A batch is validated as a
        whole: with any malformed event, nothing is applied.
        """
        body = await _read_body(request, settings.max_body_bytes)
        events = _parse_or_refuse(body, settings)
        await _store_outcomes(request.app.state.ledger.engine, events)
        ingest: Ingest = request.app.state.ingest
        return await ingest.submit(events)

    @app.get(
        "/healthz",
        responses={503: {"model": Detail, "description": "Temporal is unreachable."}},
        summary="Whether the API can reach Temporal",
    )
    async def healthz(request: Request) -> JSONResponse:
        """`200` when Temporal answers its health check, `503` otherwise (for load balancers)."""
        temporal: Client | None = getattr(request.app.state, "temporal", None)
        if temporal is None or not await _serving(temporal):
            return JSONResponse({"detail": "Temporal is unreachable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """The API's Prometheus metrics (events accepted, duplicates, rejected requests): docs/OPERATIONS.md."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _store_outcomes(engine: Engine, events: list[Event]) -> None:
    """Store what the events say became of messages (an app's push open...) for analytics, before
    forwarding: if the store fails, nothing was taken and the producer's retry does both."""
    rows = outcomes_of(events)
    if not rows:
        return
    try:
        await asyncio.to_thread(record_outcomes, engine, rows)
    except Exception as error:
        logger.error("could not store %d message outcomes (%s); none taken", len(rows), type(error).__name__)
        raise ForwardingFailed(len(events), "the analytics store is unavailable") from error


async def _serving(temporal: Client) -> bool:
    try:
        return await temporal.service_client.check_health(timeout=HEALTH_TIMEOUT)
    except Exception:  # unreachable, refused, timed out, TLS: all mean "not now"
        return False


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing it as soon as it is known to exceed ``limit`` (declared or actually sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(f"the body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(f"the body is over the limit of {limit} bytes")
    return bytes(body)


def _parse_or_refuse(body: bytes, settings: Settings) -> list[Event]:
    """``parse_events``, where even a reader bug answers ``422``: nothing is recorded before parsing
    ends, so refusing is always safe, and a ``500`` would make producers retry a body that never passes."""
    try:
        return parse_events(body, settings.max_batch_events, settings.max_event_bytes)
    except Rejected:
        raise
    except Exception as exc:
        logger.error("could not read a request body (%s); refused with 422", type(exc).__name__)
        raise _body_problem(422, "body", "the body could not be read as events") from None


def _too_large(message: str) -> Rejected:
    return _body_problem(413, "body", message)


def _body_problem(status: int, field: str, message: str) -> Rejected:
    """A refusal about the body as a whole (no single event to point at)."""
    return Rejected(status, [Problem(index=None, field=field, message=message)])


# Customer events only omnicart itself produces, and what sends each: refused from producers.
OMNICART_ONLY_EVENTS = {
    DATE_REACHED: "omnicart's date-trigger schedule",
    BACK_IN_STOCK: "omnicart's restock fan-out",
    PRICE_DROPPED: "omnicart's price-drop fan-out",
}


def parse_events(body: bytes, max_events: int, max_event_bytes: int = limits.MAX_EVENT_BYTES) -> list[Event]:
    """Every event of a body, or :class:`Rejected` listing every problem (no partial result).

    A JSON object with an ``events`` key is a batch; any other object is one envelope.
    """
    data = _load_json(body)
    items = _envelopes(data, max_events)
    problems: list[Problem] = []
    events: list[Event] = []
    for index, item in enumerate(items):
        try:
            event = Event.parse(item, max_event_bytes)
        except ValidationError as exc:
            problems += [_problem(index, error) for error in exc.errors()]
            continue
        sender = OMNICART_ONLY_EVENTS.get(event.type)
        if sender is not None:  # it would start the journeys it triggers, whenever a caller liked
            problems.append(Problem(index=index, field="type", message=(
                f"'{event.type}' is sent by {sender}, never by a producer")))
        events.append(event)
    if problems:
        raise Rejected(422, problems)
    return events


def _load_json(body: bytes) -> Any:
    """The body as JSON, or a ``422`` saying where it went wrong (``limits.load_json``)."""
    try:
        return limits.load_json(body)
    except limits.InvalidJson as exc:
        raise _body_problem(422, "body", str(exc)) from None


def _envelopes(data: Any, max_events: int) -> list[Any]:
    if not isinstance(data, dict):
        raise _body_problem(422, "body", 'expected one event envelope (a JSON object) or {"events": [...]}')
    if "events" not in data:
        return [data]
    extra = sorted(key for key in data if key != "events")
    if extra:
        raise Rejected(
            422,
            [Problem(index=None, field=key, message='unknown key beside "events" in a batch') for key in extra],
        )
    items = data["events"]
    if not isinstance(items, list):
        raise _body_problem(422, "events", "must be a list of event envelopes")
    if len(items) > max_events:
        raise _body_problem(
            413, "events", f"a batch holds at most {max_events} events; this one has {len(items)}: split it"
        )
    return items


_FIELD_CLASSES = frozenset(Event.model_fields) | {"body", "events"}


def _reasons(problems: list[Problem]) -> set[str]:
    """A refusal's metric labels: the top-level field of each problem (``properties``, ``timestamp``,
    ``body``...), ``other`` for a name the producer made up (labels must stay a small set)."""
    tops = {problem.field.split(".")[0].split("[")[0] for problem in problems}
    return {top if top in _FIELD_CLASSES else "other" for top in tops}


def _problem(index: int, error: ErrorDetails) -> Problem:
    field, message = describe_error(error)
    return Problem(index=index, field=field, message=message)


def _document_event_schemas(app: FastAPI) -> None:
    """Publish Event and EventBatch in the OpenAPI components, since the body is parsed by hand."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _, defs = models_json_schema(
                [(Event, "validation"), (EventBatch, "validation")],
                ref_template="#/components/schemas/{model}",
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app_from_env() -> FastAPI:
    """The API configured from the environment: ``uvicorn --factory omnicart.api.app:create_app_from_env``."""
    configure_tracing("omnicart-api")
    return create_app(get_settings())
