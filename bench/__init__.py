"""sla-guard's benchmark suite: ``python -m bench`` from the repository root.

It measures, on the machine it runs on and in one run:

- **ingest**: signed generic webhooks accepted per second, with p50/p99 time to the 202, for
  ``sla-guard serve`` on PostgreSQL against a bare Flask endpoint (:mod:`bench.bare_app`) under the
  same gunicorn settings, both driven by the same raw-HTTP load generator (:mod:`bench.load`);
- **alert lateness**: how long after its deadline each alert reaches a webhook receiver when
  thousands of clocks are open at once, plus the Redis memory their timers take
  (:mod:`bench.lateness`).

Every process is a real one (``sla-guard serve``, ``sla-guard worker``, gunicorn), all traffic
stays on 127.0.0.1, and the report is printed and written to ``bench/RESULTS.md``.
"""
