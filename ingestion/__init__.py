"""Translations from the formats shops already send — the Segment tracking spec, Shopify and
WooCommerce webhooks, exported customer and order files — into cyklo's own events and
profiles. Pure where it can be: the API and the CLI do the I/O and route through api.ingest."""
