"""``python -m workers [--burst]``: the worker process. ``sla-guard worker`` checks the settings,
the rules file, Redis and the schema, then becomes this process (``exec``), so the package never
imports ``workers``."""

from __future__ import annotations

import sys

from sla_guard.config import load_settings
from sla_guard.logs import configure_logging
from sla_guard.runtime import Runtime
from workers.main import run


def main(argv: list[str]) -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    run(Runtime.from_settings(settings), burst="--burst" in argv)


if __name__ == "__main__":
    main(sys.argv[1:])
