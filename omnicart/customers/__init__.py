"""What the ingest side knows about customers: a queryable copy of each profile (``profiles``).

The customer's workflow stays the source of truth for journeys; this copy exists so that other
features (the console's search, date-based triggers) can find customers without asking every
workflow. See docs/ARCHITECTURE.md, "The customer profile projection".
"""
