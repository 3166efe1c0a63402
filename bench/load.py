"""Closed-loop HTTP load generator: a fixed number of connections, a new TCP connection per request.

gunicorn's sync workers close the connection after every response, so each request here is a
raw ``POST`` with ``Connection: close`` on a fresh socket, as a CRM's webhook sender behaves. Each
request carries the next pre-built body from a JSON Lines file, signed with the current time just
before it is sent (so a long run never trips the signature age limit). Requests started during the
warm-up are sent but not counted; no request starts after the measured window ends.

Run as a separate process by :mod:`bench.ingest`::

    python -m bench.load --port 8000 --bodies bodies.jsonl --secret S --out result.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from pathlib import Path

from sla_guard.security import SIGNATURE_HEADER, sign

from .stats import summary

REQUEST_TIMEOUT_S = 10.0
"""A request taking longer than this counts as an error (``timeout``)."""


def request_bytes(host: str, port: int, path: str, body: bytes, secret: str | None) -> bytes:
    """The whole HTTP/1.1 request for ``body``, signed now when ``secret`` is given."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if secret:
        lines.append(f"{SIGNATURE_HEADER}: {sign(secret, body, int(time.time()))}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _one(host: str, port: int, payload: bytes) -> str:
    """Send one request on a new connection; return the status code, or an error name."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    status_line = response.split(b"\r\n", 1)[0].split()
    return status_line[1].decode() if len(status_line) >= 2 else "empty-response"


async def run_load(
    host: str,
    port: int,
    path: str,
    bodies: list[bytes],
    secret: str | None,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
) -> dict:
    """Drive ``concurrency`` connections for ``warmup_s + duration_s`` (or until bodies run out)."""
    started = time.perf_counter()
    window_start = started + warmup_s
    window_end = window_start + duration_s
    next_body = 0
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    warmup_requests = warmup_accepted = 0
    last_done = window_start

    async def connection_loop() -> None:
        nonlocal next_body, warmup_requests, warmup_accepted, last_done
        while next_body < len(bodies):
            now = time.perf_counter()
            if now >= window_end:
                return
            body = bodies[next_body]
            next_body += 1
            payload = request_bytes(host, port, path, body, secret)
            begin = time.perf_counter()
            try:
                outcome = await asyncio.wait_for(_one(host, port, payload), REQUEST_TIMEOUT_S)
            except TimeoutError:
                outcome = "timeout"
            except OSError as exc:
                outcome = type(exc).__name__
            end = time.perf_counter()
            if begin < window_start:
                warmup_requests += 1
                warmup_accepted += outcome == "202"
                continue
            statuses[outcome] += 1
            latencies.append((end - begin) * 1000.0)
            last_done = max(last_done, end)

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(connection_loop() for _ in range(concurrency)))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    measured_s = max(last_done - window_start, 1e-9)
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    ok = statuses.get("202", 0)
    return {
        "concurrency": concurrency,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "measured_s": measured_s,
        "requests": len(latencies),
        "accepted": ok,
        "rps": len(latencies) / measured_s,
        "accepted_rps": ok / measured_s,
        "errors": {status: count for status, count in statuses.items() if status != "202"},
        "error_count": len(latencies) - ok,
        "latency_ms": summary(latencies),
        "warmup_requests": warmup_requests,
        "warmup_accepted": warmup_accepted,
        "bodies_used": next_body,
        "bodies_exhausted": next_body >= len(bodies),
        "generator_cpu_share": cpu_s / max(time.perf_counter() - started, 1e-9),
    }


def read_bodies(path: Path) -> list[bytes]:
    """The request bodies of a JSON Lines file, one per line."""
    return [line for line in path.read_bytes().split(b"\n") if line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/webhooks/generic")
    parser.add_argument("--bodies", type=Path, required=True, help="JSON Lines file, one request body a line")
    parser.add_argument("--secret", default=None, help="sign each body with this webhook secret")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds sent but not counted")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here (default: stdout)")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the load generator only targets the local machine")
    result = asyncio.run(
        run_load(
            args.host,
            args.port,
            args.path,
            read_bodies(args.bodies),
            args.secret,
            args.concurrency,
            args.warmup,
            args.duration,
        )
    )
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
