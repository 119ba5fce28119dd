"""Safe references to customers: what ids, logs and erased rows carry instead of an email or phone.

Some shops use the customer's email address or phone number as the customer id. Those must not
appear in workflow ids (shown in the Temporal UI, kept in its visibility store) or log lines, so
such an id is replaced by a keyed hash (HMAC-SHA256 with the shop's signing secret): stable, so
the same customer always reaches the same workflow, and not reversible by hashing a list of
addresses, which a bare hash would be. Opaque ids such as ``cus_42`` are kept as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from pydantic import SecretStr

_EMAIL_OR_PHONE = re.compile(r".*@.*|\+?[\d ().-]{7,}")
_DOMAIN = b"omnicart customer id\x00"


def keyed_hash(customer_id: str, secret: SecretStr | None = None) -> str:
    """``h-`` and 32 hex digits of HMAC-SHA256(secret, customer id)."""
    key = (secret if secret is not None else _signing_secret()).get_secret_value().encode()
    return "h-" + hmac.new(key, _DOMAIN + customer_id.encode(), hashlib.sha256).hexdigest()[:32]


def looks_personal(customer_id: str) -> bool:
    """An id that is an email address or a phone number."""
    return _EMAIL_OR_PHONE.fullmatch(customer_id.strip()) is not None


def customer_ref(customer_id: str, secret: SecretStr | None = None) -> str:
    """The customer id where it is opaque, its keyed hash where it is an email or phone number."""
    return keyed_hash(customer_id, secret) if looks_personal(customer_id) else customer_id


def _signing_secret() -> SecretStr:
    from omnicart.settings import get_settings

    return get_settings().signing_secret
