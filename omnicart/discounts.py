"""Single-use discount codes: the same message always carries the same code, and a code works once.

A code is an HMAC of the message id under the signing secret, so a retried send renders the very
code the first attempt rendered (nothing to coordinate, nothing to lose), and nobody without the
secret can mint a valid-looking one. Every issued code is recorded so that a shop's checkout can
``check`` it and ``redeem`` it exactly once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import SecretStr
from sqlalchemy import Column, DateTime, Engine, Integer, String, Table, select, update
from sqlalchemy.exc import IntegrityError

from omnicart.storage import metadata, utc

discount_codes = Table(
    "discount_codes",
    metadata,
    Column("code", String(40), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("message_id", String(200), nullable=False, unique=True),
    Column("percent", Integer, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("redeemed_at", DateTime(timezone=True)),
    Column("order_id", String(200)),
)


@dataclass(frozen=True)
class Discount:
    code: str
    customer_id: str
    message_id: str
    percent: int
    issued_at: datetime
    redeemed_at: datetime | None = None
    order_id: str | None = None

    def context(self) -> dict[str, object]:
        """What templates see as ``discount``."""
        return {"code": self.code, "percent": self.percent}


def discount_code(secret: SecretStr | str, message_id: str) -> str:
    """``OC-XXXXX-XXXXX``: 50 bits of HMAC-SHA256, in a case-insensitive alphabet people can type."""
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    digest = hmac.new(key.encode(), f"discount:{message_id}".encode(), hashlib.sha256).digest()
    letters = base64.b32encode(digest).decode()[:10]
    return f"OC-{letters[:5]}-{letters[5:]}"


class DiscountBook:
    """Issues, checks and redeems codes, in the product's database."""

    def __init__(self, engine: Engine, secret: SecretStr | str) -> None:
        self.engine = engine
        self._secret = secret

    def issue(self, *, customer_id: str, message_id: str, percent: int) -> Discount:
        """The code for this message, recorded on first issue; the same answer on every retry."""
        if not 1 <= percent <= 100:
            raise ValueError(f"discount percent must be between 1 and 100, got {percent}")
        code = discount_code(self._secret, message_id)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    discount_codes.insert().values(
                        code=code,
                        customer_id=customer_id,
                        message_id=message_id,
                        percent=percent,
                        issued_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            pass  # issued by an earlier attempt of the same send
        found = self.check(code)
        if found is None:  # pragma: no cover - the row was just written or already there
            raise LookupError(f"discount code for message {message_id!r} was not recorded")
        return found

    def check(self, code: str) -> Discount | None:
        """The code as issued (``redeemed_at`` set once used), or None when we never issued it."""
        with self.engine.connect() as conn:
            row = conn.execute(select(discount_codes).where(discount_codes.c.code == code.strip().upper())).first()
        if row is None:
            return None
        return Discount(
            code=row.code,
            customer_id=row.customer_id,
            message_id=row.message_id,
            percent=row.percent,
            issued_at=utc(row.issued_at),
            redeemed_at=None if row.redeemed_at is None else utc(row.redeemed_at),
            order_id=row.order_id,
        )

    def redeem(self, code: str, order_id: str) -> bool:
        """Use the code for an order. False when unknown or already used: a code works once."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(discount_codes)
                .where(discount_codes.c.code == code.strip().upper(), discount_codes.c.redeemed_at.is_(None))
                .values(redeemed_at=datetime.now(UTC), order_id=order_id)
            )
            return result.rowcount == 1
