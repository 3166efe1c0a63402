"""The ingest baseline: a bare Flask app that only parses the JSON body and answers 202.

It runs under gunicorn with exactly the options of ``sla-guard serve``
(:func:`sla_guard.web.server.gunicorn_options`) and the same worker count, so the ratio of the
two throughputs is the cost of what sla-guard does on top of receiving a JSON webhook: checking
the signature, validating the events, committing them to the database and handing their leads
to the workers::

    python -m bench.bare_app --host 127.0.0.1 --port 8001 --workers 4
"""

from __future__ import annotations

import argparse

from flask import Flask, request

from sla_guard.web.server import SlaGuardServer, gunicorn_options


def create_bare_app() -> Flask:
    """One POST endpoint at the generic webhook's path: parse the JSON, answer 202."""
    app = Flask(__name__)

    @app.post("/webhooks/generic")
    def generic():
        request.get_json()
        return "", 202

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_app", description="The ingest baseline under gunicorn.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    args = parser.parse_args(argv)
    SlaGuardServer(gunicorn_options(args.host, args.port, args.workers), create_bare_app).run()


if __name__ == "__main__":
    main()
