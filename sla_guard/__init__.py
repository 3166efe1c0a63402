"""sla-guard: makes a sales team answer every lead on time."""

from __future__ import annotations

from flask import Flask

__version__ = "0.1.0"


def create_app(test_config: dict | None = None) -> Flask:
    """Build the web app. Settings: defaults → environment → ``test_config``.

    ``test_config`` is keyed by environment names (``SLA_GUARD_QUEUE``…); its other keys
    (``TESTING``…) go to Flask's ``app.config``. It may also hold ``CLOCK``, a function returning the aware current time.
    Raises :class:`~sla_guard.exceptions.ConfigError` or :class:`~sla_guard.exceptions.RulesError`
    with a message naming what is wrong.
    """
    from sla_guard import dashboard, endpoints, store
    from sla_guard.config import APP_CONFIG_KEY, ENV_NAMES, load_settings
    from sla_guard.ingest import crm_webhooks as crm
    from sla_guard.ingest import webhooks
    from sla_guard.logs import configure_logging
    from sla_guard.runtime import RulesHolder, redis_client, utcnow
    from sla_guard.web import ack, admin, api, chat, health, quarantine

    overrides = dict(test_config or {})
    clock = overrides.pop("CLOCK", utcnow)
    settings = load_settings(overrides=overrides)
    app = Flask(__name__)
    app.config.update({k: v for k, v in overrides.items() if k not in ENV_NAMES and not k.startswith("SLA_GUARD_")})
    app.config[APP_CONFIG_KEY] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    if not app.testing:
        configure_logging(settings.log_level)
    app.extensions["sla_guard.clock"] = clock
    app.extensions["sla_guard.rules"] = RulesHolder(settings.rules_path)
    app.extensions["sla_guard.redis"] = redis_client(settings.redis_url)
    store.init_app(app)
    endpoints.init_app(app)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(crm.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(ack.bp)
    app.register_blueprint(chat.bp)
    app.register_blueprint(quarantine.bp)
    dashboard.init_app(app)
    return app
