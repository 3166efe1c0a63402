# syntax=docker/dockerfile:1
#
# sla-guard production image.
#
#   docker build -t sla-guard:local .
#   docker run --rm sla-guard:local sla-guard db upgrade        # with DATABASE_URL etc. set
#   docker run -p 8000:8000 sla-guard:local                     # the web app (default command)
#   docker run --no-healthcheck sla-guard:local sla-guard worker
#
# Settings are environment variables (DATABASE_URL, REDIS_URL, SLA_GUARD_*). The rules file is
# /app/config/sla.yaml (the default SLA_GUARD_RULES, relative to the working directory); mount
# your own config/ over it to change rules without rebuilding. docker-compose.yml runs the
# whole stack.

# --- builder: the sla-guard wheel and every dependency wheel (PostgreSQL driver included) -------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# README* is optional: the pattern copies it when present without failing when it is not.
COPY pyproject.toml README* ./
COPY sla_guard/ sla_guard/
COPY workers/ workers/
# requirements.txt pins the runtime stage to exactly the version built here.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[postgres]" \
    && python -c "import tomllib; print('sla-guard[postgres]==' + tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])" \
        > /wheels/requirements.txt

# --- runtime: Python, the installed wheels and the rules; no compilers, no package caches -------
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The wheels are bind-mounted from the builder for this one step, so they never become a layer
# of the final image; --no-index keeps the install from reaching out to a package index.
# /app belongs to the service user so that the SQLite default (sqlite:///sla_guard.db) works
# for a quick try; production sets DATABASE_URL to PostgreSQL.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    groupadd --system --gid 10001 sla-guard \
    && useradd --system --uid 10001 --gid sla-guard --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin sla-guard \
    && install -d -o sla-guard -g sla-guard -m 0755 /app \
    && pip install --no-cache-dir --no-index --find-links=/wheels --requirement /wheels/requirements.txt \
    && sla-guard --version

WORKDIR /app
# Owned by root and only readable by the service: rules change through a new image or a mount.
COPY config/ config/

USER 10001:10001

EXPOSE 8000

# Liveness only (/readyz also checks PostgreSQL and Redis). Containers running `sla-guard worker`
# or `sla-guard db upgrade` serve no HTTP: start them with --no-healthcheck (compose disables it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["sla-guard", "serve", "--host", "0.0.0.0", "--port", "8000"]
