"""Connectors: Shopify and WooCommerce webhooks and a Segment-compatible API, mapped to omnicart events.

One module per platform (``shopify``, ``woocommerce``, ``woocommerce_checkout``, ``segment``) and a
shared core (``core``: signatures, map-then-ingest-or-quarantine; ``quarantine``). See
docs/CONNECTORS.md.
"""
