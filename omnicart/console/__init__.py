"""The marketer's console: journeys as diagrams with live numbers, customers' timelines, preview,
publish and pause, behind the product's own users. Served on its own loopback listener
(``OMNICART_CONSOLE_ADDRESS``), never by the worker or the public ingest port."""
