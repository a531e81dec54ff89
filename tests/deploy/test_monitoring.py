"""Metrics, dashboards and alerts against the real servers (Debian's Prometheus and Alertmanager,
installed by tests/services/ensure.sh): the repository's rules pass ``promtool check`` and their
unit tests, the Alertmanager configuration passes ``amtool check-config``; a Prometheus scraping
a real paper session (``tradeloop live run`` with ``TRADELOOP_METRICS_PORT``), the real API, the
market-data service on a loopback venue (REST and WebSocket) and the research exporter over a
Dagster instance with real runs answers every dashboard panel's query with data; a rule of the
repository's that fires on the engine's metrics (the kill switch, tripped by a tight drawdown
limit) reaches a webhook through an Alertmanager running the repository's configuration."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest
import yaml
from exchange_server import BinanceLoopback
from ws_exchange_server import BinanceWsLoopback

from tests.conftest import REDIS_URL
from tests.live.conftest import SYMBOLS, World, trained_world  # noqa: F401  (shared fixture)
from tests.live.test_ccxt_feed import rows
from tests.live.test_feed_gaps import serve_rest
from tests.pipelines.test_research_metrics import runs_in

# the stack (six processes started at nice 19) comes up in the first test's setup: minutes on a loaded machine
pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
SESSION = "metrics-paper"
REPLAYED_BARS = 120
SCRAPE_S = 1


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run tests/services/ensure.sh (it installs Debian's prometheus and alertmanager)"
    return path


def run_tool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out


# ---------------------------------------------------------------------- static checks
def test_the_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    prometheus = DEPLOY / "prometheus"
    assert "SUCCESS" in run_tool(tool("promtool"), "check", "rules", "alerts.yml", cwd=prometheus).stdout
    assert "SUCCESS" in run_tool(tool("promtool"), "check", "config", "prometheus.yml", cwd=prometheus).stdout
    tested = run_tool(tool("promtool"), "test", "rules", "alerts_test.yml", cwd=prometheus)
    assert "SUCCESS" in tested.stdout
    rules = [r for g in yaml.safe_load((prometheus / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    unit = yaml.safe_load((prometheus / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in unit for case in test["alert_rule_test"] if case["exp_alerts"]}
    untested = {r["alert"] for r in rules} - fired
    assert not untested, f"alerts without a unit test that fires them: {sorted(untested)}"
    headings = re.findall(r"^#+ (.+)$", (ROOT / "docs" / "operations.md").read_text(), re.M)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    unexplained = [r["alert"] for r in rules if r["annotations"]["runbook"].split("#")[1] not in anchors]
    assert not unexplained, f"alerts whose runbook link names no heading of docs/operations.md: {unexplained}"


def test_the_alertmanager_configuration_passes_amtool() -> None:
    out = run_tool(tool("amtool"), "check-config", "alertmanager.yml", cwd=DEPLOY / "alertmanager")
    assert "SUCCESS" in out.stdout and "1 receivers" in out.stdout


def test_the_dashboards_are_provisioned_on_the_provisioned_data_source() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    providers = yaml.safe_load((provisioning / "dashboards" / "tradeloop.yml").read_text())["providers"]
    assert [s["uid"] for s in sources] == ["prometheus"] and providers[0]["type"] == "file"
    assert {d.stem for d in DASHBOARDS} == {"overview", "session", "exchanges", "research"}
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        variables = {v["name"] for v in board["templating"]["list"]}
        for panel in panels_of(board):
            assert panel["datasource"]["uid"] == "prometheus", f"{path.name}: {panel['title']}"
            for target in panel["targets"]:
                used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
                assert used <= variables, f"{path.name}: {panel['title']} uses undefined {used - variables}"
    assert len(uids) == len(DASHBOARDS)


def panels_of(board: dict) -> list[dict]:
    """Every panel with queries (rows hold none)."""
    return [p for p in board["panels"] if p["type"] != "row"]


# ---------------------------------------------------------------------- the real stack
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, *, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return reply.read()


def wait_for(what: str, check, *, timeout_s: float, procs: list[subprocess.Popen] = ()) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        for proc in procs:
            if proc.poll() is not None:
                log = Path(proc.stdout_path).read_text()[-3000:]  # type: ignore[attr-defined]
                raise AssertionError(f"{proc.args[3:6]} exited {proc.returncode} while waiting for {what}:\n{log}")
        try:
            if result := check():
                return result
        except OSError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


class Webhook(BaseHTTPRequestHandler):
    """The alert receiver: keeps every JSON body POSTed to it."""

    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append({"path": self.path, **json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def spawn(args: list[str], *, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with log.open("w") as handle:
        proc = subprocess.Popen(
            ["nice", "-n", "19", *args], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True
        )
    proc.stdout_path = log  # type: ignore[attr-defined]  # for wait_for's report
    return proc


@pytest.fixture(scope="module")
def stack(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A paper session replaying the lake's last bars and then following it, the API over the
    same database, a loopback webhook, Alertmanager on the repository's configuration (its URL
    pointed at the webhook), the market-data service on a loopback venue, the research exporter
    over a Dagster instance holding a succeeded and a failed run (and the world's champion), and
    Prometheus on the repository's rules scraping them all every second."""
    tmp = tmp_path_factory.mktemp("monitoring")
    names = ("engine", "api", "marketdata", "research", "prometheus", "alertmanager")
    ports = {name: free_port() for name in names}
    database = f"sqlite:///{tmp / 'ops.db'}"
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    base |= {"DATABASE_URL": database, "TRADELOOP_LOG_LEVEL": "WARNING"}
    Webhook.received = []
    webhook = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    ts = trained_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    procs: list[subprocess.Popen] = []
    venue = ExitStack()
    runs_in(tmp / "dagster")  # before the processes start: a retrain that succeeded, a refresh that failed
    try:
        engine_env = base | {
            "TRADELOOP_DATA_DIR": str(trained_world.root),
            "TRADELOOP_METRICS_PORT": str(ports["engine"]),
        }
        first = str(int(ts[-REPLAYED_BARS]))  # a drawdown limit of 0.01%: the first entry's fee trips the switch
        procs.append(engine := spawn(
            [sys.executable, "-m", "tradeloop", "live", "run", "--name", SESSION, "--start", first, "--follow",
             "--risk", "max_drawdown=0.0001", "--risk", "daily_loss_limit=null"],
            log=tmp / "engine.log", env=engine_env,
        ))  # fmt: skip
        api_env = base | {"TRADELOOP_DATA_DIR": str(tmp / "api")}
        procs.append(api := spawn(
            [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host", "127.0.0.1",
             "--port", str(ports["api"]), "--log-level", "warning"],
            log=tmp / "api.log", env=api_env,
        ))  # fmt: skip
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        # the API up before the others start: on a loaded machine their imports starve its start
        wait_for("the API", lambda: get(f"{urls['api']}/health"), timeout_s=180, procs=[api])
        rest = venue.enter_context(BinanceLoopback(candles={}))
        script = {"BTCUSDT": rows(600, 11)}  # one candle every 0.5 s for 5 minutes: the stream stays live
        serve_rest(rest, script)
        ws = venue.enter_context(BinanceWsLoopback(script, pace_s=0.5))
        procs.append(spawn(
            [sys.executable, "-m", "tradeloop", "market-data", "run", "--exchange", "binance", "--timeframe", "1m",
             "--symbol", "BTC-USDT"],
            log=tmp / "marketdata.log",
            env=base | {"TRADELOOP_DATA_DIR": str(tmp / "marketdata"), "REDIS_URL": REDIS_URL,
                        "DATABASE_URL": f"sqlite:///{tmp / 'marketdata.db'}",  # its own: no lock on the API's
                        "TRADELOOP_REDIS_PREFIX": f"monitoring-{os.getpid()}", "TRADELOOP_EXCHANGE_API_URL": rest.url,
                        "TRADELOOP_EXCHANGE_WS_URL": ws.url, "TRADELOOP_METRICS_PORT": str(ports["marketdata"])},
        ))  # fmt: skip
        procs.append(spawn(
            [sys.executable, "-m", "pipelines.metrics"],
            log=tmp / "research.log",
            env=base | {"TRADELOOP_DATA_DIR": str(trained_world.root), "DAGSTER_HOME": str(tmp / "dagster"),
                        "TRADELOOP_METRICS_PORT": str(ports["research"])},
        ))  # fmt: skip
        am_config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
        for receiver in am_config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = f"http://127.0.0.1:{webhook.server_port}/alertmanager"
        (tmp / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
        procs.append(spawn(
            [tool("prometheus-alertmanager"), f"--config.file={tmp / 'alertmanager.yml'}",
             f"--storage.path={tmp / 'am-data'}", f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
             "--cluster.listen-address="],
            log=tmp / "alertmanager.log",
        ))  # fmt: skip
        procs.append(spawn(
            [tool("prometheus"), f"--config.file={prometheus_config(tmp, ports)}",
             f"--storage.tsdb.path={tmp / 'prom-data'}", f"--web.listen-address=127.0.0.1:{ports['prometheus']}"],
            log=tmp / "prometheus.log",
        ))  # fmt: skip
        for path in ("/health", "/ready", "/sessions", "/no-such-page"):  # a 200, a 401, a 404
            try:
                get(urls["api"] + path, timeout=60)  # /ready asks the database: slow on a loaded machine
            except urllib.error.HTTPError:
                pass
        wait_for("the replay", lambda: replayed(urls["engine"]), timeout_s=240, procs=[engine])
        yield {"urls": urls, "procs": procs, "webhook": Webhook.received, "tmp": tmp}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        venue.close()
        webhook.shutdown()


def prometheus_config(tmp: Path, ports: dict[str, int]) -> Path:
    """The repository's prometheus.yml with this test's targets, rules and a 1 s scrape."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"] |= {
        "scrape_interval": f"{SCRAPE_S}s",
        "scrape_timeout": f"{SCRAPE_S}s",
        "evaluation_interval": f"{SCRAPE_S}s",
    }
    config["rule_files"] = [str(DEPLOY / "prometheus" / f) for f in config["rule_files"]]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{ports['alertmanager']}"]
    targets = {"tradeloop-engine": "engine", "tradeloop-api": "api", "tradeloop-marketdata": "marketdata",
               "tradeloop-research": "research", "prometheus": "prometheus",
               "alertmanager": "alertmanager"}  # fmt: skip
    config["scrape_configs"] = [
        job | {"static_configs": [{"targets": [f"127.0.0.1:{ports[targets[job['job_name']]]}"]}]}
        for job in config["scrape_configs"]
        if job["job_name"] in targets  # no worker here: the API runs its jobs itself
    ]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def replayed(engine_url: str) -> bool:
    """The session's bars are all in (it then waits for new candles)."""
    text = get(f"{engine_url}/metrics").decode()
    found = re.search(rf'^tradeloop_bars_total{{session="{SESSION}"}} (\S+)$', text, re.M)
    return found is not None and float(found.group(1)) >= REPLAYED_BARS


def query(prometheus: str, expr: str) -> dict:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        return json.loads(get(url))
    except urllib.error.HTTPError as exc:  # a bad query is a 400 with the error in the body
        return json.loads(exc.read())


def test_every_dashboard_panel_has_data_in_a_prometheus_scraping_the_engine_and_the_api(stack: dict) -> None:
    prometheus = stack["urls"]["prometheus"]

    def scraped() -> bool:
        up = query(prometheus, 'up{job=~"tradeloop-(engine|api|marketdata|research)"} == 1')["data"]["result"]
        history = query(prometheus, f'count_over_time(tradeloop_equity{{session="{SESSION}"}}[1m]) >= 5')
        venue = query(prometheus, "count_over_time(tradeloop_venue_last_message_timestamp_seconds[1m]) >= 5")
        return len(up) == 4 and bool(history["data"]["result"]) and bool(venue["data"]["result"])

    wait_for("five scrapes of every tradeloop process", scraped, timeout_s=180, procs=stack["procs"])
    problems, asked = [], 0
    for path in DASHBOARDS:
        for panel in panels_of(json.loads(path.read_text())):
            for target in panel["targets"]:
                expr = target["expr"].replace("$session", SESSION).replace("$__rate_interval", "30s")
                answer, asked = query(prometheus, expr), asked + 1
                if answer["status"] != "success":
                    problems.append(f"{path.name} / {panel['title']}: {answer.get('error')} in {expr}")
                elif not answer["data"]["result"]:
                    problems.append(f"{path.name} / {panel['title']}: no data for {expr}")
    assert asked >= 65  # every panel of the four dashboards
    assert not problems, "\n".join(problems)


def test_the_engine_reports_its_session_to_prometheus(stack: dict) -> None:
    prometheus = stack["urls"]["prometheus"]

    def value(expr: str) -> float:
        result = query(prometheus, expr)["data"]["result"]
        assert len(result) == 1, f"{expr}: {result}"
        return float(result[0]["value"][1])

    def scraped_all() -> bool:  # the engine has all its bars (the fixture waited); a scrape may lag by one
        result = query(prometheus, f'tradeloop_bars_total{{session="{SESSION}"}}')["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) >= REPLAYED_BARS

    wait_for("Prometheus to scrape the replay's last bar", scraped_all, timeout_s=30, procs=stack["procs"])
    assert value(f'tradeloop_bars_total{{session="{SESSION}"}}') == REPLAYED_BARS
    assert value(f'count(tradeloop_feed_last_received_timestamp_seconds{{session="{SESSION}"}})') == len(SYMBOLS)
    assert value(f'time() - tradeloop_engine_heartbeat_timestamp_seconds{{session="{SESSION}"}}') < 60
    assert value(f'sum(tradeloop_orders_total{{session="{SESSION}"}})') >= 1  # the entry that tripped the switch
    assert value(f'tradeloop_kill_switch_trips_total{{session="{SESSION}"}}') == 1
    assert value(f'tradeloop_model_fallback{{session="{SESSION}"}}') == 0
    assert value('sum(tradeloop_api_requests_total{route="/sessions", status="401"})') >= 1
    assert value('sum(tradeloop_api_requests_total{route="unmatched", status="404"})') >= 1


def test_a_firing_rule_reaches_the_webhook_through_alertmanager(stack: dict) -> None:
    """KillSwitchTripped (alerts.yml, no pending time) on the engine's real gauge, routed by the
    repository's Alertmanager configuration (critical: sent after 10 s) to the webhook."""

    def delivered() -> list[dict]:
        return [
            alert
            for post in stack["webhook"]
            for alert in post["alerts"]
            if alert["labels"].get("alertname") == "KillSwitchTripped" and alert["status"] == "firing"
        ]

    alerts = wait_for("the kill switch alert at the webhook", delivered, timeout_s=60, procs=stack["procs"])
    post = next(p for p in stack["webhook"] if p["alerts"] and p["alerts"][0] in alerts)
    assert post["path"] == "/alertmanager" and post["receiver"] == "tradeloop-webhook"
    alert = alerts[0]
    assert alert["labels"]["session"] == SESSION and alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook"] == "docs/operations.md#killswitchtripped"
