"""The ``omnicart`` command: what marketers and operators type.

Each command is a thin shell over a function in the module that owns the concept, so the same
behaviour is reachable from tests and from Python without going through the terminal.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

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
) -> None:
    """Print the JSON Schema of a journey file, for editors' YAML validation and autocomplete."""
    from omnicart.journey.loader import journey_schema
    from omnicart.plan import default_plan

    typer.echo(json.dumps(default_plan().json_schema() if plan else journey_schema(), indent=2))


@app.command()
def simulate(
    journey_file: Annotated[Path, typer.Argument(help="The journey to preview.")],
    events: Annotated[Path, typer.Option("--events", help="A JSON-lines file of event envelopes.")],
    show_content: Annotated[
        bool, typer.Option("--show-content", help="Print each sent message's subject and text.")
    ] = False,
    imported_at: Annotated[
        datetime | None,
        typer.Option("--imported-at", help="Preview a backfill: events older than this time (UTC) arrive at it."),
    ] = None,
) -> None:
    """Preview what a journey would do for an event timeline, on a virtual clock, sending nothing."""
    from omnicart.simulate import simulate_command

    at = imported_at.replace(tzinfo=imported_at.tzinfo or UTC) if imported_at is not None else None
    raise typer.Exit(simulate_command(journey_file, events, imported_at=at, show_content=show_content))


@app.command()
def dev(
    port: Annotated[int | None, typer.Option(help="Ingest API port (default: OMNICART_API_PORT or 8080).")] = None,
) -> None:
    """Run everything on this machine: Temporal dev server, worker and ingest API."""
    from omnicart.dev import run_dev

    run_dev(port=port)


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


if __name__ == "__main__":
    app()
