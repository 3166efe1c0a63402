"""Flask blueprints: webhooks, the read API, health and metrics."""
