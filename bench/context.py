"""One benchmark run's identity and settings: ids, secrets, database, queues, rules file, paths."""

from __future__ import annotations

import secrets
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from redis import Redis

from .services import base_env

RULES_TEMPLATE = """\
    # Rules of the sla-guard benchmark: one 24/7 first-touch rule (no calendar) whose breach
    # goes to a webhook channel, the benchmark's own alert receiver.
    timezone: UTC
    locale: en
    channels:
      sink: {{type: webhook, url: "${{SINK_URL:-http://127.0.0.1:9/unused}}", timeout_s: 5}}
    rules:
      - name: bench first touch
        first_touch:
          within: {within}
          escalate: [{{after: 0s, notify: [sink]}}]
"""


def rules_text(within_s: int) -> str:
    """The benchmark's rules file with a first-touch budget of ``within_s`` seconds."""
    return textwrap.dedent(RULES_TEMPLATE.format(within=f"{within_s}s"))


@dataclass
class Bench:
    """Everything the phases share. ``out_dir`` (under ``bench/out/``, ignored by git) keeps the
    logs, bodies and raw results of the run."""

    repo: Path
    pg_admin_url: str
    db_name: str
    redis_url: str
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    api_token: str = field(default_factory=lambda: secrets.token_hex(16))
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def out_dir(self) -> Path:
        return self.repo / "bench" / "out" / self.run_id

    @property
    def db_url(self) -> str:
        return self.pg_admin_url.rsplit("/", 1)[0] + f"/{self.db_name}"

    def queue(self, phase: str) -> str:
        """The RQ queue of one phase: unique per run, so nothing else's jobs are ever touched."""
        return f"bench-{self.run_id}-{phase}"

    def redis(self) -> Redis:
        return Redis.from_url(self.redis_url)

    def write_rules(self, phase: str, within_s: int) -> Path:
        path = self.out_dir / f"{phase}-sla.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rules_text(within_s))
        return path

    def env(self, queue: str, rules: Path, **extra: str) -> dict[str, str]:
        """The environment of an sla-guard process of this run."""
        metrics_dir = self.out_dir / f"metrics-{queue}"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        return {
            **base_env(),
            "DATABASE_URL": self.db_url,
            "REDIS_URL": self.redis_url,
            "SLA_GUARD_RULES": str(rules),
            "SLA_GUARD_WEBHOOK_SECRET": self.secret,
            "SLA_GUARD_API_TOKEN": self.api_token,
            "SLA_GUARD_QUEUE": queue,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            **extra,
        }
