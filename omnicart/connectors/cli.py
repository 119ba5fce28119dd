"""``omnicart connect ...`` (set-up help) and ``omnicart connectors quarantine ...`` (operators)."""

from __future__ import annotations

from typing import Annotated

import typer

from omnicart.connectors import shopify, woocommerce, woocommerce_checkout

connect_app = typer.Typer(help="Connect a shop's platform: what to configure on its side.", no_args_is_help=True)
connectors_app = typer.Typer(help="The connectors' quarantine: genuine deliveries that could not be mapped.",
                             no_args_is_help=True)
quarantine_app = typer.Typer(help="List and replay quarantined connector deliveries.", no_args_is_help=True)
connectors_app.add_typer(quarantine_app, name="quarantine")


def shopify_subscriptions(public_url: str, api_version: str) -> str:
    """The webhook subscriptions to create, as the ``[webhooks]`` section of the app's ``shopify.app.toml``."""
    address = public_url.rstrip("/") + shopify.PATH
    topics = ", ".join(f'"{topic}"' for topic in shopify.EVENT_TOPICS)
    compliance = ", ".join(f'"{topic}"' for topic in shopify.PRIVACY_TOPICS)
    return "\n".join([
        "# shopify.app.toml: then `shopify app deploy`. Every topic goes to one address.",
        "[webhooks]",
        f'api_version = "{api_version}"',
        "",
        "[[webhooks.subscriptions]]",
        f"topics = [{topics}]",
        f'uri = "{address}"',
        "",
        "[[webhooks.subscriptions]]",
        f"compliance_topics = [{compliance}]",
        f'uri = "{address}"',
    ])


@connect_app.command("shopify")
def connect_shopify(
    print_subscriptions: Annotated[
        bool, typer.Option("--print-subscriptions", help="Print the webhook subscriptions to create.")
    ] = False,
) -> None:
    """Shopify: the webhook subscriptions (topics, address, API version) for OMNICART_PUBLIC_URL."""
    from omnicart.settings import get_settings

    settings = get_settings()
    if not print_subscriptions:
        raise typer.BadParameter("say what to print: --print-subscriptions")
    typer.echo(shopify_subscriptions(settings.public_url, settings.shopify_api_version))
    if settings.shopify_api_secret is None:
        typer.echo("# OMNICART_SHOPIFY_API_SECRET is not set: deliveries will be answered 503 until it is.", err=True)


@connect_app.command("woocommerce")
def connect_woocommerce() -> None:
    """WooCommerce: the webhooks to add (WooCommerce > Settings > Advanced > Webhooks) and the checkout script."""
    from omnicart.settings import get_settings

    settings = get_settings()
    base = settings.public_url.rstrip("/")
    for topic in woocommerce.TOPICS:
        typer.echo(f"webhook  topic={topic}  delivery URL={base}{woocommerce.PATH}  API version=WP REST API v3  "
                   "secret=$OMNICART_WOOCOMMERCE_WEBHOOK_SECRET")
    typer.echo(f"checkout page  <script async src=\"{base}{woocommerce_checkout.SCRIPT_PATH}\" "
               "data-customer=\"ID\" data-token=\"hash_hmac('sha256', ID, SECRET)\"></script>")


@quarantine_app.command("list")
def quarantine_list(
    connector: Annotated[str | None, typer.Option(help="shopify, woocommerce or segment.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, oldest first.")] = 100,
) -> None:
    """Genuine deliveries kept because they could not be mapped, with the reason (no payloads)."""
    from rich.console import Console
    from rich.table import Table

    from omnicart.connectors.quarantine import ConnectorQuarantine
    from omnicart.settings import get_settings
    from omnicart.storage import get_engine, require_current

    engine = get_engine(get_settings().database())
    require_current(engine)
    entries = ConnectorQuarantine(engine).open_entries(connector, limit)
    table = Table("connector", "delivery", "topic", "when", "reason")
    for entry in entries:
        d = entry.delivery
        table.add_row(d.connector, d.delivery_id, d.topic, entry.quarantined_at.isoformat(timespec="seconds"),
                      entry.reason)
    Console().print(table if entries else "No connector delivery is quarantined.")


@quarantine_app.command("replay")
def quarantine_replay(
    connector: Annotated[str | None, typer.Option(help="Only this connector's deliveries.")] = None,
) -> None:
    """Map every quarantined delivery again (after fixing the mapping or once what was missing arrived)."""
    import asyncio

    from omnicart.api.event_log import EventLog
    from omnicart.api.ingest import Ingest
    from omnicart.connectors.core import ConnectorInbox
    from omnicart.connectors.mappings import mappings_for
    from omnicart.connectors.quarantine import ConnectorQuarantine
    from omnicart.journey.registry import JourneyRegistry, PublishedJourneys
    from omnicart.settings import get_settings
    from omnicart.storage import get_engine, require_current
    from omnicart.temporal import connect

    settings = get_settings()
    engine = get_engine(settings.database())
    require_current(engine)

    async def run() -> list[str]:
        ingest = Ingest(await connect(settings), settings.task_queue, PublishedJourneys(JourneyRegistry(engine)),
                        EventLog(engine), settings)
        inbox = ConnectorInbox(ingest, ConnectorQuarantine(engine), mappings_for(engine, settings),
                               settings.max_event_bytes)
        outcomes = await inbox.replay(connector)
        return [f"{d.connector} {d.delivery_id}: " + (f"still quarantined: {a.reason}" if a.quarantined else
                f"taken in ({a.accepted} accepted, {a.duplicates} duplicates)") for d, a in outcomes]

    lines = asyncio.run(run())
    for line in lines:
        typer.echo(line)
    if not lines:
        typer.echo("No connector delivery is quarantined.")
