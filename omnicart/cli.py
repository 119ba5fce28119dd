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


if __name__ == "__main__":
    app()
