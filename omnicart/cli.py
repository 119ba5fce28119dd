"""The ``omnicart`` command: what marketers and operators type.

Each command is a thin shell over a function in the module that owns the concept, so the same
behaviour is reachable from tests and from Python without going through the terminal.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from omnicart.journey.registry import JourneyRegistry

app = typer.Typer(
    help="Omnichannel cart-abandonment journeys on Temporal.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Journey files or folders (default: journeys/).")] = None,
) -> None:
    """Check journey files; print FILE:LINE:COL: message for every problem."""
    from omnicart.journey.report import validate_paths

    raise typer.Exit(validate_paths(paths or [Path("journeys")]))


@app.command()
def schema(
    plan: Annotated[bool, typer.Option("--plan", help="Print the tracking plan (every event type) instead.")] = False,
    policies: Annotated[
        bool, typer.Option("--policies", help="Print the schema of journeys/policies.yaml instead.")
    ] = False,
) -> None:
    """Print the JSON Schema of a journey file (or of the plan, or of policies.yaml), for editors' YAML validation."""
    from omnicart.journey.loader import journey_schema, policies_schema
    from omnicart.plan import default_plan

    if plan and policies:
        raise typer.BadParameter("choose --plan or --policies, not both")
    document = default_plan().json_schema() if plan else policies_schema() if policies else journey_schema()
    typer.echo(json.dumps(document, indent=2))


@app.command()
def simulate(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Journey files or folders (a folder: every journey in it, with its policies); without "
            "--events, the last one is the events file.",
            metavar="PATHS",
            show_default=False,
        ),
    ],
    events: Annotated[
        Path | None, typer.Option("--events", help="A JSON-lines file of event envelopes.")
    ] = None,
    show_content: Annotated[
        bool, typer.Option("--show-content", help="Print each sent message's subject and text.")
    ] = False,
    imported_at: Annotated[
        datetime | None,
        typer.Option("--imported-at", help="Preview a backfill: events older than this time (UTC) arrive at it."),
    ] = None,
) -> None:
    """Preview what journeys would do for an event timeline, on a virtual clock, sending nothing.

    `omnicart simulate journeys/ events.jsonl` runs every journey of the folder, as production would.
    """
    from omnicart.simulate import simulate_command

    if events is None:
        if len(paths) < 2:
            raise typer.BadParameter("name the events file: --events FILE, or last after the journeys")
        *paths, events = paths
    at = imported_at.replace(tzinfo=imported_at.tzinfo or UTC) if imported_at is not None else None
    raise typer.Exit(simulate_command(paths, events, imported_at=at, show_content=show_content))


@app.command()
def dev(
    port: Annotated[int | None, typer.Option(help="Ingest API port (default: OMNICART_API_PORT or 8080).")] = None,
) -> None:
    """Run everything on this machine: Temporal dev server, worker and ingest API."""
    from omnicart.dev import run_dev

    run_dev(port=port)


def _registry() -> JourneyRegistry:
    from omnicart.journey.registry import JourneyRegistry
    from omnicart.settings import get_settings
    from omnicart.storage import get_engine, require_current

    engine = get_engine(get_settings().database())
    require_current(engine)
    return JourneyRegistry(engine)


@app.command()
def publish(
    paths: Annotated[list[Path] | None, typer.Argument(help="Journey files or folders (default: journeys/).")] = None,
    by: Annotated[str | None, typer.Option(help="Who publishes, for the history (default: user@host).")] = None,
) -> None:
    """Validate journeys and publish them to the registry every API host and worker reads; all or none.

    A journey whose content changed becomes a new version; runs under way keep the version they began on.
    """
    from omnicart.journey.registry import default_author, publish_files

    changed, problems = publish_files(_registry(), paths or [Path("journeys")], by or default_author())
    for problem in problems:
        typer.echo(str(problem), err=True)
    if problems:
        typer.echo("nothing was published", err=True)
        raise typer.Exit(1)
    typer.echo(f"published: {', '.join(changed)}" if changed else "nothing changed")



@app.command()
def journeys() -> None:
    """The published journeys: version, status, and who changed them last."""
    from rich.console import Console
    from rich.table import Table

    table = Table("journey", "version", "status", "trigger", "updated", "by")
    for name, item in sorted(_registry().published().items()):
        table.add_row(name, item.version, item.status, item.bundle.journey.trigger.describe(),
                      item.updated_at.isoformat(timespec="seconds"), item.updated_by)
    Console().print(table if table.row_count else "No journey is published: run omnicart publish.")


@app.command()
def pause(
    name: Annotated[str, typer.Argument(help="The journey's name.")],
    by: Annotated[str | None, typer.Option(help="Who pauses it (default: user@host).")] = None,
    exit_runs: Annotated[
        bool, typer.Option("--exit-runs", help="Also end the runs under way (exit reason journey_paused).")
    ] = False,
) -> None:
    """Stop new entries into a journey; customers already in it carry on, or with --exit-runs leave it."""
    import asyncio

    from omnicart.journey.registry import UnknownJourney, default_author

    try:
        changed = _registry().pause(name, by or default_author(), exit_runs=exit_runs)
    except UnknownJourney as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"{name} paused" if changed else f"{name} was already paused")
    if exit_runs:
        from omnicart.journey_exit import exit_runs as exit_runs_of
        from omnicart.settings import get_settings
        from omnicart.temporal import connect

        settings = get_settings()
        paused_at = datetime.now(UTC)

        async def run() -> int:
            return await exit_runs_of(await connect(settings), settings.task_queue, name, paused_at,
                                      per_second=settings.journey_exit_rate)

        typer.echo(f"told {asyncio.run(run())} customer workflows to end their runs of {name}")


@app.command()
def resume(
    name: Annotated[str, typer.Argument(help="The journey's name.")],
    by: Annotated[str | None, typer.Option(help="Who resumes it (default: user@host).")] = None,
) -> None:
    """Let a paused journey take new entries again."""
    from omnicart.journey.registry import UnknownJourney, default_author

    try:
        changed = _registry().resume(name, by or default_author())
    except UnknownJourney as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"{name} resumed" if changed else f"{name} was not paused")


quarantine_app = typer.Typer(
    help="What customers' workflows could not handle and set aside: list it, show it, replay it after a fix.",
    no_args_is_help=True,
)
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("list")
def quarantine_list(
    limit: Annotated[int, typer.Option(help="At most this many entries, oldest first.")] = 100,
) -> None:
    """Every quarantined input not replayed yet, across all customers (from the product database)."""
    from rich.console import Console
    from rich.table import Table

    from omnicart.quarantine import QuarantineLog
    from omnicart.settings import get_settings
    from omnicart.storage import get_engine, require_current

    engine = get_engine(get_settings().database())
    require_current(engine)
    entries = QuarantineLog(engine).open_entries(limit)
    table = Table("workflow", "#", "when", "kind", "event", "journey", "error")
    for entry in entries:
        table.add_row(entry.workflow_id, str(entry.seq), entry.quarantined_at.isoformat(timespec="seconds"),
                      entry.kind, f"{entry.event_type or ''} {entry.event_id or ''}".strip(), entry.journey or "",
                      entry.error)
    Console().print(table if entries else "Nothing is quarantined.")


@quarantine_app.command("show")
def quarantine_show(customer_id: Annotated[str, typer.Argument(help="The customer's id.")]) -> None:
    """One customer's quarantine, as their workflow holds it (JSON lines)."""
    import asyncio

    from omnicart.routing import customer_workflow_id
    from omnicart.signals import QUARANTINE_QUERY
    from omnicart.temporal import connect

    async def show() -> list[dict[str, object]]:
        client = await connect()
        entries: list[dict[str, object]] = await client.get_workflow_handle(
            customer_workflow_id(customer_id)).query(QUARANTINE_QUERY)
        return entries

    for entry in asyncio.run(show()):
        typer.echo(json.dumps(entry))


@quarantine_app.command("replay")
def quarantine_replay(
    customer_ids: Annotated[list[str] | None, typer.Argument(help="Customers whose events to replay.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every workflow on `omnicart quarantine list`.")] = False,
) -> None:
    """Try quarantined events again, once the fix for what failed is deployed."""
    import asyncio

    from omnicart.quarantine import QuarantineLog, replay
    from omnicart.routing import customer_workflow_id
    from omnicart.settings import get_settings
    from omnicart.storage import get_engine, require_current
    from omnicart.temporal import connect

    engine = get_engine(get_settings().database())
    require_current(engine)
    log = QuarantineLog(engine)
    workflow_ids = [customer_workflow_id(customer_id) for customer_id in customer_ids or []]
    if all_:
        workflow_ids += [entry.workflow_id for entry in log.open_entries(limit=100_000)]
    if not workflow_ids:
        raise typer.BadParameter("name customers, or --all")

    async def run() -> dict[str, list[dict[str, object]]]:
        return await replay(await connect(), log, workflow_ids)

    for workflow_id, still in asyncio.run(run()).items():
        typer.echo(f"{workflow_id}: {'replayed' if not still else f'{len(still)} still quarantined'}")


db = typer.Typer(help="The product's database: migrations.", no_args_is_help=True)
app.add_typer(db, name="db")


@db.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision (default: the newest).")] = "head",
) -> None:
    """Migrate OMNICART_DATABASE_URL to the schema this version needs; run before rolling out.

    Safe to run from several processes at once: they take turns on a lock in the database.
    """
    from omnicart.settings import get_settings
    from omnicart.storage import display_url
    from omnicart.storage.migrate import upgrade

    url = get_settings().database()
    typer.echo(f"{display_url(url)} is at {', '.join(upgrade(url, revision))}")


@db.command("current")
def db_current() -> None:
    """Print the database's revision and the one this code needs; exit 1 when they differ."""
    from omnicart.settings import get_settings
    from omnicart.storage import display_url, get_engine
    from omnicart.storage.migrate import current_revisions, head_revisions

    url = get_settings().database()
    current, heads = current_revisions(get_engine(url)), head_revisions()
    at = ", ".join(current) or "nothing (never migrated)"
    typer.echo(f"{display_url(url)}: at {at}; code needs {', '.join(heads)}")
    raise typer.Exit(0 if set(current) == set(heads) else 1)


@db.command("revision")
def db_revision(
    message: Annotated[str, typer.Argument(help="What the migration does, e.g. 'add customer_keys'.")],
) -> None:
    """Write a new migration for the tables declared in code but not yet migrated; review it before committing."""
    from omnicart.storage.migrate import new_revision

    typer.echo(f"wrote {new_revision(message)}: review it (batch mode, named constraints) before committing")


@app.command()
def forget(customer_id: Annotated[str, typer.Argument(help="The customer id your shop sends in events.")]) -> None:
    """Erase a customer everywhere (right to be forgotten); safe to run again. See docs/PRIVACY.md."""
    import asyncio

    from omnicart.privacy.forget import forget_customer
    from omnicart.settings import get_settings
    from omnicart.temporal import connect

    async def run() -> list[str]:
        settings = get_settings()
        return (await forget_customer(await connect(settings), settings, customer_id)).lines()

    for line in asyncio.run(run()):
        typer.echo(line)


privacy_app = typer.Typer(help="What the product keeps about a customer (docs/PRIVACY.md).", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")


@privacy_app.command("export")
def privacy_export(
    customer_id: Annotated[str, typer.Argument(help="The customer id your shop sends in events.")],
) -> None:
    """Print the customer's consent history (every change with its source and evidence) as JSON."""
    from omnicart.consent.history import ConsentHistory
    from omnicart.settings import get_settings
    from omnicart.storage import get_engine, require_current

    settings = get_settings()
    engine = get_engine(settings.database())
    require_current(engine)
    document = ConsentHistory(engine, settings.signing_secret).export(customer_id)
    typer.echo(document.model_dump_json(indent=2))


retention_app = typer.Typer(help="Removing personal data past OMNICART_RETENTION_DAYS.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@retention_app.command("apply")
def retention_apply() -> None:
    """Remove recipients, provider errors and outbox lines older than OMNICART_RETENTION_DAYS, once."""
    from omnicart.privacy.retention import apply_retention
    from omnicart.settings import get_settings

    report = apply_retention(get_settings())
    if report is None:
        typer.echo("OMNICART_RETENTION_DAYS is not set: nothing is removed", err=True)
        raise typer.Exit(1)
    for line in report.lines():
        typer.echo(line)


keys_app = typer.Typer(help="Encryption keys for what the product writes to Temporal.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new(key_id: Annotated[str | None, typer.Option(help="Default: k and the current UTC time.")] = None) -> None:
    """Print a new random master key as 'id:base64': put it first in OMNICART_ENCRYPTION_KEYS."""
    from omnicart.security.keys import new_key_spec

    typer.echo(new_key_spec(key_id))


@app.command()
def report(
    journey: Annotated[str, typer.Argument(help="The journey's name.")],
    since: Annotated[datetime | None, typer.Option(help="Runs that entered at or after this time (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Runs that entered before this time (UTC).")] = None,
    by: Annotated[str, typer.Option(help="One row per step, variant, channel or version.")] = "step",
    format_: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    simulate_: Annotated[
        Path | None, typer.Option("--simulate", help="Preview: the report this JSON-lines timeline would give.")
    ] = None,
    journeys_dir: Annotated[
        Path, typer.Option("--journeys", help="With --simulate: the journeys folder.")
    ] = Path("journeys"),
) -> None:
    """How a journey did: entries, sends and their outcomes per step, conversions, revenue (docs/ANALYTICS.md)."""
    from omnicart.analytics.present import FORMATS, ReportInputError, simulated_report, stored_report, write_report
    from omnicart.analytics.report import GROUP_BY
    from omnicart.settings import get_settings

    group_by = next((choice for choice in GROUP_BY if choice == by), None)
    fmt = next((choice for choice in FORMATS if choice == format_), None)
    if group_by is None:
        raise typer.BadParameter(f"--by is one of {', '.join(GROUP_BY)}")
    if fmt is None:
        raise typer.BadParameter(f"--format is one of {', '.join(FORMATS)}")
    start, end = (value.replace(tzinfo=value.tzinfo or UTC) if value else None for value in (since, until))
    try:
        if simulate_ is not None:
            made = simulated_report(journey, simulate_, journeys_dir, group_by, start, end)
        else:
            made = stored_report(get_settings().database(), journey, group_by, start, end)
    except ReportInputError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    write_report(made, fmt)


catalog_app = typer.Typer(help="The shop's catalog: products, stock per location, prices.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("show")
def catalog_show(sku: Annotated[str, typer.Argument(help="The variant's sku.")]) -> None:
    """A sku's details, price, lowest price of the last 30 days, stock per location and interested customers."""
    from rich.console import Console

    from omnicart.catalog.present import show_sku
    from omnicart.settings import get_settings
    from omnicart.storage import get_engine, require_current

    engine = get_engine(get_settings().database())
    require_current(engine)
    if not show_sku(engine, sku, Console()):
        raise typer.Exit(1)


def _add_connector_commands() -> None:
    """``omnicart connect`` and ``omnicart connectors`` live with the connectors (omnicart.connectors.cli)."""
    from omnicart.connectors.cli import connect_app, connectors_app

    app.add_typer(connect_app, name="connect")
    app.add_typer(connectors_app, name="connectors")


@app.command()
def console(
    temporal: Annotated[
        bool, typer.Option(help="Connect to Temporal (TEMPORAL_ADDRESS) to show customers' runs.")
    ] = True,
) -> None:
    """Run the marketer's console on OMNICART_CONSOLE_ADDRESS (loopback by default)."""
    import asyncio

    from omnicart.console.server import console_server, console_url
    from omnicart.settings import get_settings
    from omnicart.storage import get_engine, require_current

    settings = get_settings()
    require_current(get_engine(settings.database()))

    async def run() -> None:
        client = None
        if temporal:
            from omnicart.temporal import connect

            try:
                client = await connect(settings)
            except Exception as exc:  # the console still shows everything but runs without Temporal
                typer.echo(f"Temporal is not reachable ({type(exc).__name__}): customers' runs will not show", err=True)
        server = console_server(settings, client)
        typer.echo(f"Console      {console_url(settings)}")
        await server.serve()

    asyncio.run(run())


users_app = typer.Typer(help="The console's users: who may log in, and what they may change.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="The name to log in with.")],
    role: Annotated[str, typer.Option(help="admin, editor (may publish and pause) or viewer (read only).")] = "viewer",
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, envvar="OMNICART_NEW_USER_PASSWORD",
                          help="Asked for when not given (or set OMNICART_NEW_USER_PASSWORD).")
    ] = "",
) -> None:
    """Create a console user (the first admin, then everyone else)."""
    from omnicart.console.users import ROLES, ConsoleUsers, UserExists
    from omnicart.settings import get_settings
    from omnicart.storage import get_engine, require_current

    chosen = next((choice for choice in ROLES if choice == role), None)
    if chosen is None:
        raise typer.BadParameter(f"--role is one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise typer.BadParameter("the password needs at least 8 characters")
    engine = get_engine(get_settings().database())
    require_current(engine)
    try:
        ConsoleUsers(engine).create(username, password, chosen)
    except UserExists as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {username} ({chosen})")


_add_connector_commands()


if __name__ == "__main__":
    app()
