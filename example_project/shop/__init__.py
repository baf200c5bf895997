"""The shop: models whose changes are published as webhooks (see ``WEBHOOKS`` in settings)."""
