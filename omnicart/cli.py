"""The ``omnicart`` command: what marketers and operators type.

Each command is a thin shell over a function in the module that owns the concept, so the same
behaviour is reachable from tests and from Python without going through the terminal.
"""

from __future__ import annotations

import json
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
def schema() -> None:
    """Print the JSON Schema of a journey file, for editors' YAML validation and autocomplete."""
    from omnicart.journey.loader import journey_schema

    typer.echo(json.dumps(journey_schema(), indent=2))


@app.command()
def simulate(
    journey_file: Annotated[Path, typer.Argument(help="The journey to preview.")],
    events: Annotated[Path, typer.Option("--events", help="A JSON-lines file of event envelopes.")],
) -> None:
    """Preview what a journey would do for an event timeline, on a virtual clock, sending nothing."""
    from omnicart.simulate import simulate_command

    raise typer.Exit(simulate_command(journey_file, events))


@app.command()
def dev(
    port: Annotated[int | None, typer.Option(help="Ingest API port (default: OMNICART_API_PORT or 8080).")] = None,
) -> None:
    """Run everything on this machine: Temporal dev server, worker and ingest API."""
    from omnicart.dev import run_dev

    run_dev(port=port)


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


if __name__ == "__main__":
    app()
