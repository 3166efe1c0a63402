"""``python -m workers [--burst]``: the worker process. ``sla-guard worker`` becomes this process
(``exec``), so the package never imports ``workers``; the start-up checks (settings, rules file,
Redis, schema) are made here, each failure one line naming what to fix."""

from __future__ import annotations

import sys

from sla_guard.logs import configure_logging
from sla_guard.preflight import redis_or_fail, rules_or_fail, schema_or_fail, settings_or_fail
from sla_guard.runtime import Runtime
from workers.main import run


def main(argv: list[str]) -> None:
    settings = settings_or_fail()
    rules_or_fail(settings.rules_path)
    redis_or_fail(settings.redis_url)
    schema_or_fail(settings.database_url)
    configure_logging(settings.log_level)
    run(Runtime.from_settings(settings), burst="--burst" in argv)


if __name__ == "__main__":
    main(sys.argv[1:])
