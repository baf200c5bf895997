"""The demo site: a small shop that publishes webhooks, and a receiver that verifies them."""
