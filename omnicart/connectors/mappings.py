"""Every connector's mapping, by connector name: what the API's inbox and the CLI's replay both use."""

from __future__ import annotations

from sqlalchemy import Engine

from omnicart.connectors import segment, shopify, woocommerce
from omnicart.connectors.core import EventMapping
from omnicart.connectors.segment_mapping import load_mapping
from omnicart.settings import Settings


def mappings_for(engine: Engine, settings: Settings) -> dict[str, EventMapping]:
    return {
        shopify.CONNECTOR: shopify.ShopifyMapping(engine),
        woocommerce.CONNECTOR: woocommerce.WooCommerceMapping(),
        segment.CONNECTOR: segment.SegmentCalls(load_mapping(settings.segment_mapping_file)),
    }
