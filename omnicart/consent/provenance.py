"""Where a consent change came from: the ``source`` and ``evidence`` properties of consent events.

The tracking plan declares both on ``consent_changed`` and ``customer_updated``
(``omnicart/plan/events/_definitions.yaml``: ``consent_source``, ``consent_evidence``). Producers
send them; the product's own entry points (SMS keywords, provider webhooks, unsubscribe links, the
preference centre) add them with :func:`provenance`, so every row of the consent history says how
the customer's choice reached us and what proves it.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

ConsentSource = Literal[
    "form", "checkout", "sms_keyword", "email_unsubscribe", "preference_centre", "import", "provider", "api"
]
CONSENT_SOURCES: tuple[str, ...] = get_args(ConsentSource)
DEFAULT_SOURCE: ConsentSource = "api"
"""A consent event that does not say where it came from was stated through the API."""


def provenance(source: ConsentSource, **evidence: str | int | bool | None) -> dict[str, Any]:
    """The ``source`` and ``evidence`` properties to merge into a consent event (empty values left out)."""
    return {"source": source, "evidence": {name: value for name, value in evidence.items() if value not in (None, "")}}
