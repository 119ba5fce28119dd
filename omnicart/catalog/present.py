"""``omnicart catalog show SKU``: one sku as an operator checks it before a restock or a sale."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from omnicart.catalog.interest import count_interested
from omnicart.catalog.prices import OMNIBUS_DAYS, lowest_price
from omnicart.catalog.products import product_of
from omnicart.catalog.stock import stock_of


def show_sku(engine: Engine, sku: str, console: Console, now: datetime | None = None) -> bool:
    """Print the sku's details, price, lowest price of the last 30 days, stock per location and
    how many customers are interested; False when the catalog has never heard of it."""
    now = now or datetime.now(UTC)
    product = product_of(engine, sku)
    if product is None:
        console.print(f"No catalog event has named the sku {sku!r}.")
        return False
    currency = product.currency or ""
    details = Table.grid(padding=(0, 2))
    details.add_row("sku", product.sku)
    details.add_row("name", product.name or "-")
    details.add_row("category", product.category or "-")
    details.add_row("url", product.url or "-")
    details.add_row("price", "-" if product.price is None else f"{product.price:.2f} {currency}".strip())
    lowest = lowest_price(engine, sku, before=now, currency=product.currency)
    details.add_row(f"lowest, {OMNIBUS_DAYS} days", "-" if lowest is None else f"{lowest:.2f} {currency}".strip())
    details.add_row("interested customers", str(count_interested(engine, sku, now)))
    console.print(details)
    levels = stock_of(engine, sku)
    stock = Table("location", "units", title="Stock")
    for location, quantity in sorted(levels.items()):
        stock.add_row(location, str(quantity), style=None if quantity > 0 else "dim")
    stock.add_row("total in stock", str(sum(max(quantity, 0) for quantity in levels.values())), style="bold")
    console.print(stock)
    return True
