"""The containers, for real: deploy/docker/compose.yaml passes ``docker-compose config``, and the
image of deploy/docker/Dockerfile (built on a local base, tests/deploy/images.py: no image
registry is reachable here) runs every Python service of the compose file, each with its
compose command and its compose health check, with host networking against this machine's
PostgreSQL (a throwaway database) and Redis (a key prefix of the test's own). A trader made
with the image's `tradeloop users create` signs in through the containerised API, makes a
paper session there, and the engine container trades it (the API's ``run_command``, replaying
the sample lake with a real champion): its order shows at ``GET /sessions/{id}/orders``.

Host networking puts every service on this machine's loopback, so each gets a free port in
place of compose's fixed one, and binds 127.0.0.1 in place of 0.0.0.0."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
import redis
import yaml

from tests.conftest import REDIS_URL, throwaway_database
from tests.deploy import images
from tests.live.conftest import REPLAYED, SYMBOLS, World, trained_world  # noqa: F401  (shared fixture)

# the first run builds the base, the wheelhouse and the image (minutes; the figures are in the
# report of this module's image fixture); later runs take them from the caches
pytestmark = pytest.mark.timeout(1800)
ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "deploy" / "docker"
PASSWORD = "container trader password"
#: compose's fixed ports of the services run here (host networking gives each a free one)
PORTS = {"api": 8000, "dashboard": 8501, "dagster-webserver": 3000, "jupyterlab": 8888}
METRICS_PORTS = {"worker": 9102, "engine": 9101}
IMAGE_SERVICES = ("api", "worker", "dashboard", "dagster-webserver", "dagster-daemon", "research-metrics", "engine",
                  "engine-testnet", "jupyterlab")  # fmt: skip
OTHERS = ("postgres", "redis", "prometheus", "alertmanager", "grafana", "nginx")


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    assert plugin.returncode == 0, "docker-compose is missing: run tests/services/ensure.sh (Debian's docker-compose)"
    return ["docker", "compose"]


@pytest.fixture(scope="module")
def compose() -> dict:
    """compose.yaml as ``docker-compose config`` resolves it, with the required passwords set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADELOOP_", "STAGING_", "COMPOSE_"))}
    env |= {"POSTGRES_PASSWORD": "pw", "GRAFANA_ADMIN_PASSWORD": "pw", "TRADELOOP_ENCRYPTION_KEY": "k"}
    out = subprocess.run([*compose_command(), "-f", str(DOCKER_DIR / "compose.yaml"), "config"],
                         capture_output=True, text=True, env=env, cwd=DOCKER_DIR, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_the_compose_file_is_valid_and_every_service_restarts_and_reports_its_health(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {*IMAGE_SERVICES, *OTHERS}
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"][0] == "CMD", name
    for name in IMAGE_SERVICES:
        assert services[name]["image"] == "tradeloop:latest", name
        probe = services[name]["healthcheck"]["test"]
        assert probe[1:3] == ["python", "/app/deploy/docker/healthcheck.py"] or probe[1:] == [
            "dagster-daemon", "liveness-check"], name  # fmt: skip
    assert services["api"]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert services["api"]["build"]["args"] == {"BASE_IMAGE": "python:3.11-slim"}
    assert [n for n, s in services.items() if s.get("ports")] == ["nginx"]  # nothing else is published
    assert {n: s.get("profiles") for n, s in services.items() if s.get("profiles")} == {
        "engine": ["dev"], "jupyterlab": ["dev"], "engine-testnet": ["staging"]}  # fmt: skip
    # secrets pass through from the environment of the compose command, never as empty strings
    assert services["api"]["environment"]["TRADELOOP_ENCRYPTION_KEY"] == "k"
    # nginx's upstreams are services that listen there
    upstreams = {k: v for k, v in services["nginx"]["environment"].items() if k.endswith("_UPSTREAM")}
    for upstream in upstreams.values():
        host, port = upstream.split(":")
        assert str(port) in " ".join(map(str, services[host]["command"])), upstream
    trusted = services["api"]["environment"]["TRADELOOP_TRUSTED_PROXIES"]
    assert services["nginx"]["networks"]["tradeloop"]["ipv4_address"] == trusted


def test_the_compose_prometheus_scrapes_what_deploy_prometheus_scrapes() -> None:
    ours = yaml.safe_load((DOCKER_DIR / "prometheus.yml").read_text())
    theirs = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert [j["job_name"] for j in ours["scrape_configs"]] == [j["job_name"] for j in theirs["scrape_configs"]]
    assert ours["rule_files"] == theirs["rule_files"] and ours["global"] == theirs["global"]
    ports = {j["job_name"]: j["static_configs"][0]["targets"][0].split(":")[1] for j in ours["scrape_configs"]}
    assert ports["tradeloop-engine"] == str(METRICS_PORTS["engine"])
    assert ports["tradeloop-worker"] == str(METRICS_PORTS["worker"])


# ---------------------------------------------------------------------- the image, running
class Containers:
    """Containers this test starts (removed at the end), named after the run."""

    def __init__(self, *, image: str, data: Path, env: dict[str, str]) -> None:
        self.image, self.data, self.env = image, data, env
        self.run_id = uuid.uuid4().hex[:8]
        self.names: list[str] = []

    def start(self, service: str, command: list[str], *, health: list[str], env: dict[str, str] | None = None) -> str:
        """``docker run`` as compose runs the service (init, its command), with its health
        check probed every 2 s (failures while starting do not count)."""
        name = f"tradeloop-test-{self.run_id}-{service}"
        environment = [f"--env={k}={v}" for k, v in (self.env | (env or {})).items()]
        images.docker(
            "run", "--detach", "--init", "--network=host", f"--name={name}", f"--volume={self.data}:/data",
            *environment,
            f"--health-cmd={shlex.join(health[1:])}", "--health-interval=2s", "--health-timeout=15s",
            "--health-retries=3", "--health-start-period=600s",
            self.image, *command,
        )  # fmt: skip
        self.names.append(name)
        return name

    def health(self, name: str) -> str:
        return images.docker("inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", name).strip()

    def logs(self, name: str) -> str:
        out = subprocess.run(["docker", "logs", "--tail", "60", name], capture_output=True, text=True, timeout=60)
        return out.stdout + out.stderr

    def wait_healthy(self, names: list[str], *, timeout_s: float) -> None:
        deadline, pending = time.monotonic() + timeout_s, list(names)
        while pending:
            states = {name: self.health(name) for name in pending}
            for name, state in states.items():
                assert state.startswith("running"), f"{name} stopped ({state}):\n{self.logs(name)}"
            pending = [name for name, state in states.items() if state != "running healthy"]
            if pending and time.monotonic() > deadline:
                report = "\n\n".join(f"{n} ({states[n]}):\n{self.logs(n)}" for n in pending)
                raise AssertionError(f"not healthy after {timeout_s:g} s:\n{report}")
            time.sleep(1)

    def remove(self) -> None:
        for name in reversed(self.names):
            subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=120)


def on_loopback(words: list[str], ports: dict[int, int]) -> list[str]:
    """A compose command or health check (as ``config`` prints it: ``$$`` for a ``$`` compose
    leaves to the shell) for host networking: each fixed port replaced by this run's, 0.0.0.0
    by 127.0.0.1."""

    def port(match: re.Match) -> str:
        return str(ports.get(int(match.group(0)), match.group(0)))

    return [
        re.sub(r"(?<![\d.])\d{4}(?![\d.])", port, w).replace("0.0.0.0", "127.0.0.1").replace("$$", "$") for w in words
    ]


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    started = time.monotonic()
    tag = images.app_image()
    took = {**images.TIMINGS, "total": round(time.monotonic() - started, 1)}
    print(f"\nimage {tag}: {images.image_size_mb(tag):.0f} MB; built in {took} s")
    yield tag


@pytest.fixture(scope="module")
def stack(image: str, compose: dict, trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("containers")
    data = tmp / "data"
    for part in ("lake", "registry"):
        shutil.copytree(trained_world.settings.data_dir / part, data / part)
    for path in [data, *data.rglob("*")]:  # the image's user (uid 10001) writes here
        path.chmod(0o777 if path.is_dir() else 0o666)
    prefix = f"tradeloop-test-{uuid.uuid4().hex[:8]}"
    free = {port: _free_port() for port in (*PORTS.values(), *METRICS_PORTS.values())}
    services = compose["services"]
    with throwaway_database("tradeloop_containers") as database:
        containers = Containers(image=image, data=data, env={
            "DATABASE_URL": database, "REDIS_URL": REDIS_URL, "TRADELOOP_REDIS_PREFIX": prefix,
            "TRADELOOP_LOG_LEVEL": "WARNING", "TRADELOOP_METRICS_HOST": "127.0.0.1",
        })  # fmt: skip
        try:
            started: dict[str, str] = {}

            def start(service: str) -> None:
                """The compose service, after what it depends on is healthy (the API first:
                the others start while the trade test runs)."""
                spec = services[service]
                deps = [started[d] for d, c in spec.get("depends_on", {}).items() if d in started]
                containers.wait_healthy(deps, timeout_s=300)
                env = {}
                if service in METRICS_PORTS:
                    env["TRADELOOP_METRICS_PORT"] = str(free[METRICS_PORTS[service]])
                if service == "jupyterlab":
                    env["JUPYTER_TOKEN"] = "container-lab-token"
                started[service] = containers.start(
                    service, on_loopback(list(map(str, spec["command"])), free),
                    health=on_loopback(spec["healthcheck"]["test"], free), env=env,
                )  # fmt: skip

            for service in ("api", "worker", "dashboard", "dagster-webserver", "jupyterlab"):
                start(service)
                if service == "api":
                    containers.wait_healthy([started["api"]], timeout_s=120)
            yield {"containers": containers, "started": started, "start": start, "free": free, "compose": compose,
                   "world": trained_world, "api": f"http://127.0.0.1:{free[PORTS['api']]}"}  # fmt: skip
        finally:
            containers.remove()
            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(f"{prefix}:*"):
                client.delete(key)
            client.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_image_runs_as_an_unprivileged_user_with_the_tradeloop_command(image: str) -> None:
    out = images.docker("run", "--rm", image, "sh", "-c", "id -u; tradeloop --help | head -3; ls /app")
    uid, *rest = out.split("\n")
    assert uid == "10001" and "tradeloop" in "\n".join(rest)
    listed = set(out.split())
    assert {"app", "notebooks", "workspace.yaml", "tradeloop", "api", "live", "pipelines"} <= listed
    assert not {"tests", ".venv", ".git", ".env", "bench"} & listed  # .dockerignore's allow-list


def test_a_trade_through_the_containerised_api_and_engine(stack: dict) -> None:
    containers: Containers = stack["containers"]
    api_name = stack["started"]["api"]
    made = subprocess.run(["docker", "exec", "--interactive", api_name, "tradeloop", "users", "create", "ana",
                           "--role", "trader", "--password-stdin"],
                          input=f"{PASSWORD}\n", capture_output=True, text=True, timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    with httpx.Client(base_url=stack["api"], timeout=30) as client:
        token = client.post("/auth/login", json={"username": "ana", "password": PASSWORD})
        assert token.status_code == 200, token.text
        ana = {"Authorization": f"Bearer {token.json()['access_token']}"}
        world: World = stack["world"]
        ts = world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
        body = {"name": "in-containers", "symbols": list(SYMBOLS), "start": int(ts[-REPLAYED])}
        session = client.post("/sessions", json=body, headers=ana)
        assert session.status_code == 201, session.text
        command = shlex.split(session.json()["run_command"])
        assert command[:3] == ["tradeloop", "live", "run"]
        spec = stack["compose"]["services"]["engine"]
        engine = containers.start(
            "engine", [*command, "--follow"], health=on_loopback(spec["healthcheck"]["test"], stack["free"]),
            env={"TRADELOOP_METRICS_PORT": str(stack["free"][METRICS_PORTS["engine"]])},
        )  # fmt: skip
        sid = session.json()["id"]

        def filled() -> list[dict]:
            orders = client.get(f"/sessions/{sid}/orders", headers=ana)
            assert orders.status_code == 200, orders.text
            return [o for o in orders.json()["items"] if o["status"] == "filled"]

        deadline = time.monotonic() + 240
        while not (fills := filled()):  # the paper broker fills an entry at the next bar's open
            assert containers.health(engine).startswith("running"), containers.logs(engine)
            assert time.monotonic() < deadline, f"no filled order after 240 s:\n{containers.logs(engine)}"
            time.sleep(1)
        assert {o["symbol"] for o in fills} <= set(SYMBOLS) and fills[0]["venue"] == "paper", fills
        assert fills[0]["intent"] == "enter_long" and fills[0]["filled_qty"] > 0, fills
        containers.wait_healthy([engine], timeout_s=180)  # its heartbeat, by the compose health check


def test_every_python_service_of_the_compose_file_becomes_healthy_in_the_image(stack: dict) -> None:
    containers: Containers = stack["containers"]
    stack["start"]("dagster-daemon")  # once the webserver is healthy, as compose.yaml orders them
    containers.wait_healthy(list(stack["started"].values()), timeout_s=300)
    api = stack["api"]
    ready = httpx.get(f"{api}/ready", timeout=10).json()
    assert ready["status"] == "ok" and ready["checks"]["database"] == ready["checks"]["redis"] == "ok", ready
