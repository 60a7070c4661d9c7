"""Checks of the deployment files (deploy/): the compose file, the Dockerfile targets, the systemd
units and the image healthcheck helper. No Docker engine is needed; `docker compose config` is
run too when the compose plugin is installed.

    python3 -m pytest tests/deploy -q
"""

from __future__ import annotations

import configparser
import http.server
import re
import shlex
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
HEALTHCHECK = DEPLOY / "healthcheck.sh"
UNITS = {
    "coordinator": DEPLOY / "systemd" / "swarmq-coordinator.service",
    "runner": DEPLOY / "systemd" / "swarmq-runner.service",
}
ENV_EXAMPLE = ROOT / ".env.example"

SWARMQ_SERVICES = ("coordinator", "runner")

# Settings added with this release; documented in README.md/docs/operations.md, not (yet) in
# .env.example.
NEW_SETTINGS = {
    "SWARMQ_API_TOKEN",
    "SWARMQ_METRICS_TOKEN",
    "SWARMQ_CORS_ORIGINS",
    "SWARMQ_CREATE_RATE_PER_MIN",
    "SWARMQ_RETENTION_SECS",
    "SWARMQ_RUNNER_HTTP",
    "SWARMQ_TRUSTED_PROXIES",
}
CADDYFILE = DEPLOY / "Caddyfile"


# ---------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    with COMPOSE.open() as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), "no services in compose"
    return doc


def service(compose: dict, name: str) -> dict:
    assert name in compose["services"], f"compose has no service {name!r}"
    return compose["services"][name] or {}


def environment(svc: dict) -> dict[str, str]:
    """`environment:` as a dict, whichever of the two compose syntaxes it uses."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, _, value = str(item).partition("=")
            out[key] = value
        return out
    return {str(k): ("" if v is None else str(v)) for k, v in env.items()}


def command_words(cmd) -> list[str]:
    if cmd is None:
        return []
    if isinstance(cmd, str):
        return shlex.split(cmd)
    return [str(c) for c in cmd]


def healthcheck_text(svc: dict) -> str:
    hc = svc.get("healthcheck") or {}
    assert hc, "no healthcheck"
    assert not hc.get("disable"), "healthcheck disabled"
    test = hc.get("test")
    assert test, "healthcheck without a test"
    words = command_words(test)
    assert words and words[0] != "NONE", "healthcheck test is NONE"
    return " ".join(words)


def duration_secs(value) -> float:
    """A compose duration ("45s", "1m30s", "2m10s", "500ms") in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(value))
    assert parts and "".join(n + u for n, u in parts) == str(value), f"bad duration {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def env_example_names() -> set[str]:
    """Every variable .env.example names, set or commented out (`# NAME=...`)."""
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", line)
        if m:
            names.add(m.group(1))
    return names


def env_example_default(name: str) -> str:
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"{name} has no default in .env.example")


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    with path.open() as f:
        parser.read_file(f)
    return parser


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> its instructions (text from its FROM to the next FROM)."""
    text = DOCKERFILE.read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    stages: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^\s*FROM\s+\S+(?:\s+AS\s+(\S+))?\s*$", line, re.IGNORECASE)
        if m:
            current = (m.group(1) or f"#{len(stages)}").lower()
            stages[current] = ""
        elif current is not None:
            stages[current] += line + "\n"
    return stages


def last_instruction(stage_text: str, instruction: str) -> str | None:
    found = None
    for line in stage_text.splitlines():
        m = re.match(rf"^\s*{instruction}\s+(.*)$", line, re.IGNORECASE)
        if m:
            found = m.group(1).strip()
    return found


# ---------------------------------------------------------------------------------------------
# docker-compose.yml


def test_compose_has_the_three_services(compose):
    for name in ("redis", "coordinator", "runner"):
        service(compose, name)


def test_redis_persists_with_aof_on_a_named_volume(compose):
    redis = service(compose, "redis")
    words = command_words(redis.get("command"))
    assert "--appendonly" in words, words
    assert words[words.index("--appendonly") + 1] == "yes", words
    assert "--appendfsync" in words, words
    assert words[words.index("--appendfsync") + 1] in ("everysec", "always"), words
    volumes = redis.get("volumes") or []
    assert volumes, "redis has no volume"
    named = set((compose.get("volumes") or {}).keys())
    sources = [
        (v.get("source") if isinstance(v, dict) else str(v).split(":", 1)[0]) for v in volumes
    ]
    assert any(s in named for s in sources), f"no named volume among {sources} (declared: {named})"
    assert "redis-cli ping" in healthcheck_text(redis)


def test_runner_scales(compose):
    runner = service(compose, "runner")
    assert "container_name" not in runner, "a fixed container_name prevents --scale"
    for port in runner.get("ports") or []:
        if isinstance(port, dict):
            assert not port.get("published"), f"host port binding {port} prevents --scale"
        else:
            # "9090" (container port only) is fine; "9090:9090" / "ip:9090:9090" bind the host.
            assert ":" not in str(port).split("/")[0], f"host port binding {port!r} prevents --scale"


def test_runner_listener_healthcheck_and_drain(compose):
    runner = service(compose, "runner")
    env = environment(runner)
    assert env.get("SWARMQ_RUNNER_HTTP"), "runner needs SWARMQ_RUNNER_HTTP for /readyz and /metrics"
    port = env["SWARMQ_RUNNER_HTTP"].rsplit(":", 1)[1]
    check = healthcheck_text(runner)
    assert "/readyz" in check and port in check, f"runner healthcheck {check!r} misses :{port}/readyz"
    assert env.get("REDIS_URL", "").startswith("${REDIS_URL:-redis://"), "REDIS_URL overridable from .env"
    assert env.get("SOCKET_URL") == "http://coordinator:3000"

    assert "stop_grace_period" in runner, "runner needs a stop_grace_period longer than its drain"
    grace = duration_secs(runner["stop_grace_period"])
    drain = float(env.get("SWARMQ_DRAIN_SECS") or env_example_default("SWARMQ_DRAIN_SECS"))
    exit_grace = float(
        env.get("SWARMQ_WORKER_EXIT_GRACE_SECS")
        or env_example_default("SWARMQ_WORKER_EXIT_GRACE_SECS")
    )
    assert grace > drain + exit_grace, (grace, drain, exit_grace)


def test_coordinator_healthcheck_port_and_redis(compose):
    coordinator = service(compose, "coordinator")
    assert "/readyz" in healthcheck_text(coordinator)
    env = environment(coordinator)
    assert env.get("REDIS_URL", "").startswith("${REDIS_URL:-redis://"), "REDIS_URL overridable from .env"
    ports = [str(p.get("published")) if isinstance(p, dict) else str(p) for p in coordinator.get("ports") or []]
    # Published on the host's loopback only (a TLS proxy fronts it), never on every interface.
    assert ports == ["127.0.0.1:3000:3000"], ports
    assert env.get("SWARMQ_API_TOKEN", "").startswith("${SWARMQ_API_TOKEN:?"), "a token is required"
    depends = coordinator.get("depends_on") or {}
    assert isinstance(depends, dict) and depends.get("redis", {}).get("condition") == "service_healthy"


def test_swarmq_services_read_an_optional_env_file(compose):
    for name in SWARMQ_SERVICES:
        files = service(compose, name).get("env_file")
        assert files, f"{name} has no env_file"
        entries = files if isinstance(files, list) else [files]
        assert any(
            isinstance(e, dict) and e.get("path") == ".env" and e.get("required") is False
            for e in entries
        ), f"{name}: env_file should be {{path: .env, required: false}}"


def test_every_swarmq_setting_in_compose_is_documented(compose):
    known = env_example_names() | NEW_SETTINGS
    used: set[str] = set()
    for name in SWARMQ_SERVICES:
        svc = service(compose, name)
        used |= set(environment(svc))
        # ${VAR} / ${VAR:-default} interpolations ($$ is a literal dollar, not one).
        text = yaml.safe_dump(svc)
        used |= set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    unknown = sorted(used - known)
    assert not unknown, f"not in .env.example nor a documented new setting: {unknown}"


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_accepts_the_file():
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def compose_default(value: str) -> str:
    """The default of a `${VAR:-default}` value (the value itself when it is not one)."""
    m = re.fullmatch(r"\$\{[A-Z0-9_]+:-(.*)\}", str(value))
    return m.group(1) if m else str(value)


def test_only_the_proxy_publishes_on_every_interface(compose):
    for name, svc in compose["services"].items():
        for port in (svc or {}).get("ports") or []:
            text = str(port.get("published") if isinstance(port, dict) else port)
            if name != "proxy":
                assert text.startswith("127.0.0.1:"), f"{name} publishes {text!r} beyond loopback"
    assert "proxy" in compose["services"] and service(compose, "proxy").get("profiles") == ["tls"]


def test_redis_has_a_memory_limit_a_password_and_a_health_check_that_uses_it(compose):
    redis = service(compose, "redis")
    words = command_words(redis.get("command"))
    for flag in ("--maxmemory", "--maxmemory-policy", "--requirepass"):
        assert flag in words, words
    assert words[words.index("--maxmemory-policy") + 1] == "noeviction"
    assert compose_default(words[words.index("--maxmemory") + 1]) not in ("", "0")
    assert words[words.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?"), "password required"
    assert environment(redis).get("REDISCLI_AUTH") == "${REDIS_PASSWORD}", "health check authenticates"
    for name in SWARMQ_SERVICES:
        url = environment(service(compose, name))["REDIS_URL"]
        assert "${REDIS_PASSWORD}@redis:6379" in url, f"{name}: default REDIS_URL lacks the password"


def test_runners_declare_replicas_slots_and_limits(compose):
    runner = service(compose, "runner")
    deploy = runner.get("deploy") or {}
    assert int(compose_default(deploy.get("replicas", "0"))) >= 1, "replicas declared in the file"
    limits = (deploy.get("resources") or {}).get("limits") or {}
    assert float(compose_default(limits.get("cpus", "0"))) > 0 and compose_default(limits.get("memory", ""))
    slots = int(compose_default(environment(runner).get("SWARMQ_RUNNER_SLOTS", "0")))
    assert 1 <= slots <= float(compose_default(limits["cpus"])) * 4, "slots sized for the cpu limit"
    coordinator_limits = (service(compose, "coordinator").get("deploy") or {}).get("resources", {}).get("limits")
    assert coordinator_limits and coordinator_limits.get("memory")


def test_stop_grace_covers_the_coordinator_shutdown_and_restart_order(compose):
    coordinator = service(compose, "coordinator")
    grace = float(environment(coordinator)["SWARMQ_SHUTDOWN_GRACE_SECS"])
    decompose = float(env_example_default("SWARMQ_DECOMPOSE_TIMEOUT_SECS"))
    assert grace >= decompose, (grace, decompose)
    assert duration_secs(coordinator["stop_grace_period"]) > grace
    assert float(env_example_default("SWARMQ_SHUTDOWN_GRACE_SECS")) == grace
    for name in SWARMQ_SERVICES:
        depends = service(compose, name).get("depends_on") or {}
        assert depends.get("redis", {}).get("condition") == "service_healthy", name
        assert depends["redis"].get("restart") is True, f"{name} restarts with redis"
    proxy = service(compose, "proxy")
    assert proxy["depends_on"]["coordinator"]["condition"] == "service_healthy"


def test_the_proxy_is_trusted_by_its_fixed_address(compose):
    address = service(compose, "proxy")["networks"]["default"]["ipv4_address"]
    assert environment(service(compose, "coordinator"))["SWARMQ_TRUSTED_PROXIES"] == address
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    import ipaddress

    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)


def test_every_container_rotates_its_logs(compose):
    for name, svc in compose["services"].items():
        logging = (svc or {}).get("logging") or {}
        assert logging.get("options", {}).get("max-size"), f"{name}: logs not rotated"


def test_caddy_example_terminates_tls_with_sticky_sessions():
    text = CADDYFILE.read_text()
    assert re.search(r"^\{\$SWARMQ_DOMAIN\}\s*\{", text, re.M), "a site block for the domain (automatic TLS)"
    assert "reverse_proxy coordinator:3000" in text
    assert re.search(r"^\s*lb_policy cookie", text, re.M), "sticky sessions"
    assert text.count("{") == text.count("}"), "balanced braces"


def test_env_example_has_no_inline_comments():
    for n, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        if re.match(r"^\s*[A-Z][A-Z0-9_]*=", line):
            assert " #" not in line and "\t#" not in line, f".env.example:{n}: inline comment in {line!r}"


# ---------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore


def test_dockerfile_targets():
    text = DOCKERFILE.read_text()
    for target in ("coordinator", "runner"):
        assert re.search(rf"^\s*FROM\s+\S+\s+AS\s+{target}\s*$", text, re.IGNORECASE | re.MULTILINE), (
            f"no `FROM ... AS {target}` stage"
        )
    assert "cargo build --release --bins --locked" in text


def test_runtime_images_run_unprivileged():
    stages = dockerfile_stages()
    for target in ("coordinator", "runner"):
        user = last_instruction(stages[target], "USER")
        base = re.search(r"^\s*FROM\s+(\S+)\s+AS\s+%s\s*$" % target, DOCKERFILE.read_text(), re.I | re.M)
        if user is None and base:  # inherited from the stage it is built on
            user = last_instruction(stages.get(base.group(1).lower(), ""), "USER")
        assert user and user.split(":")[0] not in ("root", "0"), f"{target} runs as {user!r}"
        assert last_instruction(stages[target], "HEALTHCHECK"), f"{target} has no HEALTHCHECK"
        assert "/readyz" in last_instruction(stages[target], "HEALTHCHECK")
    runner = stages["runner"]
    assert last_instruction(runner, "WORKDIR") == "/opt/swarmq"
    assert "workers/requirements.txt" in runner
    assert "SWARMQ_WORKER_CWD=/opt/swarmq" in runner
    assert 'SWARMQ_WORKER_CMD="python3 workers/worker.py"' in runner
    assert "EXPOSE 3000" in stages["coordinator"]


def test_dockerignore_keeps_the_context_small_and_secret_free():
    lines = {l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()}
    for pattern in ("target/", ".git/", "**/node_modules/", ".env"):
        assert pattern in lines, f".dockerignore misses {pattern}"
    # What the Dockerfile copies must not be ignored.
    for needed in ("workers/", "deploy/healthcheck.sh", "Cargo.lock"):
        assert needed not in lines


# ---------------------------------------------------------------------------------------------
# systemd units


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_unit_parses_and_stops_gracefully(name):
    u = unit(UNITS[name])
    for section in ("Unit", "Service", "Install"):
        assert u.has_section(section), f"{name}: no [{section}]"
    svc = u["Service"]
    for key in ("ExecStart", "Restart", "KillSignal", "TimeoutStopSec", "User", "EnvironmentFile"):
        assert svc.get(key), f"{name}: [Service] has no {key}"
    assert svc["ExecStart"].split()[0].endswith(f"swarmq-{name}")
    assert svc["Restart"] == "on-failure"
    assert svc["KillSignal"] == "SIGTERM"
    assert svc["EnvironmentFile"].lstrip("-") == "/etc/swarmq/swarmq.env"
    assert svc["User"] not in ("root", "0")
    assert svc.get("NoNewPrivileges") == "yes"
    assert svc.get("ProtectSystem") == "strict"
    assert svc.get("PrivateTmp") == "yes"


@pytest.mark.parametrize("name", sorted(UNITS))
def test_units_start_after_a_local_redis(name):
    assert "redis-server.service" in unit(UNITS[name])["Unit"]["After"].split()


def test_coordinator_unit_waits_longer_than_the_shutdown_grace():
    svc = unit(UNITS["coordinator"])["Service"]
    assert float(svc["TimeoutStopSec"]) > float(env_example_default("SWARMQ_SHUTDOWN_GRACE_SECS"))


def test_runner_unit_lets_the_runner_drain():
    svc = unit(UNITS["runner"])["Service"]
    # SIGTERM to the runner only: it drains and kills its workers' process groups itself.
    assert svc["KillMode"] == "mixed"
    drain = float(env_example_default("SWARMQ_DRAIN_SECS"))
    exit_grace = float(env_example_default("SWARMQ_WORKER_EXIT_GRACE_SECS"))
    assert float(svc["TimeoutStopSec"]) > drain + exit_grace
    # Python workers must still be able to start.
    assert "MemoryDenyWriteExecute" not in svc
    assert svc.get("WorkingDirectory") == "/opt/swarmq"


# ---------------------------------------------------------------------------------------------
# deploy/healthcheck.sh (the images' HEALTHCHECK, bash builtins only)


class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        status = 200 if self.path == "/readyz" else 503
        body = b'{"status":"ready"}' if status == 200 else b'{"error":"not ready"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def ready_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _probe(*args: str) -> int:
    bash = shutil.which("bash")
    assert bash, "bash is required by the images' healthcheck"
    return subprocess.run([bash, str(HEALTHCHECK), *args], capture_output=True, timeout=20).returncode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthcheck_helper(ready_server):
    port = ready_server
    assert _probe(f"127.0.0.1:{port}", "/readyz") == 0
    assert _probe(f"0.0.0.0:{port}", "/readyz") == 0  # wildcard listen address -> loopback
    assert _probe(f"[::]:{port}") == 0  # default path /readyz
    assert _probe(f"127.0.0.1:{port}", "/other") == 1  # 503
    assert _probe(f"127.0.0.1:{_free_port()}", "/readyz") == 1  # nothing listening
    assert _probe("", "/readyz") == 0  # listener disabled: nothing to check
    assert _probe("no-port", "/readyz") == 2
