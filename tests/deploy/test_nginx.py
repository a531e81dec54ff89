"""nginx in front of the real services, as deploy/nginx configures it: Debian's nginx (installed
by tests/services/ensure.sh) runs the repository's template, rendered as the nginx image
renders it (each ${TRADELOOP_...} replaced) with this test's loopback ports, and the self-signed
certificate and htpasswd file the setup commands make (deploy/tls/make-cert.sh,
deploy/nginx/htpasswd.sh). Behind it: the API (uvicorn over a throwaway PostgreSQL database),
the dashboard (Streamlit), the Dagster webserver and JupyterLab, each started as compose.yaml
starts it, under its path prefix. Every request goes over https, checked against the
certificate."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.api.conftest import start_api
from tests.conftest import throwaway_database
from tradeloop.identity import Role

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "templates" / "tradeloop.conf.template"
OPS_PASSWORD = "proxy gate password"
LAB_TOKEN = "lab-token-of-the-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(template: str, values: dict[str, str]) -> str:
    """What the nginx image's envsubst does with NGINX_ENVSUBST_FILTER=TRADELOOP_: every
    ${NAME} of a defined TRADELOOP_ variable replaced, nginx's own $variables left alone."""
    used = set(re.findall(r"\$\{(TRADELOOP_\w+)\}", template))
    missing = used - values.keys()
    assert not missing, f"the template uses {sorted(missing)}, which the test (and compose.yaml) must set"
    return re.sub(r"\$\{(TRADELOOP_\w+)\}", lambda m: values[m.group(1)], template)


def main_config(prefix: Path, site: Path) -> str:
    """The nginx.conf around the rendered site (the image's own plays this part)."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers read the 0700 temp folder
    temps = "\n".join(f"  {kind}_temp_path {prefix}/tmp/{kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                              "uwsgi", "scgi"))  # fmt: skip
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
        f"events {{ worker_connections 512; }}\n"
        f"http {{\n  access_log {prefix}/access.log;\n{temps}\n  include {site};\n}}\n"
    )


def wait_until(what: str, check, *, timeout_s: float, procs: dict[str, subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise AssertionError(
                    f"{name} exited {proc.returncode} waiting for {what}:\n{proc.log.read_text()[-3000:]}"
                )
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def spawn(name: str, args: list[str], *, tmp: Path, env: dict[str, str]) -> subprocess.Popen:
    log = tmp / f"{name}.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(["nice", "-n", "19", *args], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    proc.log = log  # type: ignore[attr-defined]
    return proc


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("nginx")
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    assert nginx, "nginx is missing: run tests/services/ensure.sh (it installs Debian's nginx)"
    tls = tmp / "tls"
    subprocess.run([str(ROOT / "deploy" / "tls" / "make-cert.sh"), str(tls)], check=True, capture_output=True)
    htpasswd = tmp / "htpasswd"
    made = subprocess.run([str(ROOT / "deploy" / "nginx" / "htpasswd.sh"), "ops", str(htpasswd)],
                          input=f"{OPS_PASSWORD}\n", text=True, capture_output=True)  # fmt: skip
    assert made.returncode == 0, made.stderr
    ports = {name: free_port() for name in ("http", "https", "dashboard", "dagster", "lab")}
    procs: dict[str, subprocess.Popen] = {}
    with throwaway_database("tradeloop_nginx") as database:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)} | {
            "DATABASE_URL": database, "TRADELOOP_DATA_DIR": str(tmp / "data"), "DAGSTER_HOME": str(tmp / "dagster"),
            "TRADELOOP_LOG_LEVEL": "WARNING", "JUPYTER_CONFIG_PATH": str(ROOT / "jupyter"),
            "JUPYTER_TOKEN": LAB_TOKEN, "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        (tmp / "dagster").mkdir()
        shutil.copy(ROOT / "deploy" / "docker" / "dagster.yaml", tmp / "dagster" / "dagster.yaml")
        py = sys.executable
        try:  # the commands of compose.yaml, on this test's ports
            procs["dashboard"] = spawn("dashboard", [
                py, "-m", "streamlit", "run", "app/dashboard.py", "--server.address", "127.0.0.1",
                "--server.port", str(ports["dashboard"]), "--server.baseUrlPath", "dashboard",
                "--server.headless", "true", "--browser.gatherUsageStats", "false"], tmp=tmp, env=env)  # fmt: skip
            procs["dagster"] = spawn("dagster", [
                py, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(ports["dagster"]), "-w", "workspace.yaml",
                "--path-prefix", "/dagster"], tmp=tmp, env=env)  # fmt: skip
            procs["lab"] = spawn("lab", [
                py, "-m", "jupyterlab", "--ip", "127.0.0.1", "--port", str(ports["lab"]), "--no-browser",
                "--ServerApp.base_url=/jupyter/"], tmp=tmp, env=env)  # fmt: skip
            api_runs = start_api(tmp / "api", database, REDIS_URL=None)
            api = next(api_runs)
            values = {
                "TRADELOOP_HTTP_LISTEN": f"127.0.0.1:{ports['http']}",
                "TRADELOOP_HTTPS_LISTEN": f"127.0.0.1:{ports['https']}",
                "TRADELOOP_PUBLIC_HTTPS_PORT": str(ports["https"]),
                "TRADELOOP_SERVER_NAME": "localhost",
                "TRADELOOP_TLS_DIR": str(tls),
                "TRADELOOP_HTPASSWD": str(htpasswd),
                "TRADELOOP_RESOLVER": "127.0.0.1",  # unused: the upstreams are addresses
                "TRADELOOP_API_UPSTREAM": api.url.removeprefix("http://"),
                "TRADELOOP_DASHBOARD_UPSTREAM": f"127.0.0.1:{ports['dashboard']}",
                "TRADELOOP_DAGSTER_UPSTREAM": f"127.0.0.1:{ports['dagster']}",
                "TRADELOOP_LAB_UPSTREAM": f"127.0.0.1:{ports['lab']}",
            }
            prefix = tmp / "nginx"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (prefix / "tmp" / kind).mkdir(parents=True)
            site = prefix / "tradeloop.conf"
            site.write_text(render(TEMPLATE.read_text(), values))
            (prefix / "nginx.conf").write_text(main_config(prefix, site))
            command = [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(prefix / "nginx.conf")]
            checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
            assert checked.returncode == 0, checked.stderr
            procs["nginx"] = spawn("nginx", command, tmp=tmp, env=env)
            base = f"https://127.0.0.1:{ports['https']}"
            client = httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=str(tls / "tradeloop.crt")),
                                  timeout=20)  # fmt: skip
            wait_until("nginx", lambda: client.get("/health").status_code == 200, timeout_s=30, procs=procs)
            auth = ("ops", OPS_PASSWORD)
            for what, path in (("the dashboard", "/dashboard/_stcore/health"), ("Dagster", "/dagster/server_info"),
                               ("JupyterLab", "/jupyter/api")):  # fmt: skip
                wait_until(what, lambda p=path: client.get(p, auth=auth).status_code == 200, timeout_s=120, procs=procs)
            api.user("ana", Role.TRADER)
            token = client.post("/auth/login", json={"username": "ana", "password": "correct horse battery staple"})
            assert token.status_code == 200, token.text
            yield {"client": client, "base": base, "api": api, "tls": tls, "ports": ports, "procs": procs,
                   "token": token.json()["access_token"], "auth": auth, "tmp": tmp}  # fmt: skip
            client.close()
            next(api_runs, None)
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_the_api_answers_through_the_proxy_over_tls(proxy: dict) -> None:
    client: httpx.Client = proxy["client"]
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.headers.get_list("strict-transport-security") == ["max-age=31536000"]  # once, not twice
    signed_in = {"Authorization": f"Bearer {proxy['token']}"}
    sessions = client.get("/sessions", headers=signed_in)
    assert sessions.status_code == 200 and sessions.json()["items"] == []
    assert client.get("/sessions").status_code == 401
    assert client.get("/metrics").status_code == 404  # Prometheus scrapes the API on the inside network only
    assert client.get("/docs").status_code == 200
    plain = httpx.get(f"http://127.0.0.1:{proxy['ports']['http']}/sessions?x=1", follow_redirects=False)
    assert plain.status_code == 301
    assert plain.headers["location"] == f"https://127.0.0.1:{proxy['ports']['https']}/sessions?x=1"


def test_an_untrusted_certificate_is_refused(proxy: dict) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{proxy['base']}/health", verify=ssl.create_default_context())  # the system's CAs only


def test_the_websocket_upgrade_passes_through_the_proxy(proxy: dict) -> None:
    context = ssl.create_default_context(cafile=str(proxy["tls"] / "tradeloop.crt"))
    wss = proxy["base"].replace("https://", "wss://") + "/ws"
    with connect(wss, ssl=context, subprotocols=["bearer", proxy["token"]], open_timeout=20) as ws:
        ws.send(json.dumps({"op": "ping"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}
        ws.send(json.dumps({"op": "subscribe", "channels": ["orders"]}))
        ack = json.loads(ws.recv(timeout=10))
        assert ack["type"] == "subscribed" and ack["channels"] == ["orders"]


@pytest.mark.parametrize(
    ("path", "answer"),
    [("/dashboard/_stcore/health", "ok"), ("/dagster/server_info", "dagster_webserver_version")],
)
def test_the_dashboard_and_dagster_need_the_proxy_sign_in(proxy: dict, path: str, answer: str) -> None:
    client: httpx.Client = proxy["client"]
    refused = client.get(path)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert client.get(path, auth=("ops", "a guess")).status_code == 401
    assert client.get(path, auth=("nobody", OPS_PASSWORD)).status_code == 401
    allowed = client.get(path, auth=proxy["auth"])
    assert allowed.status_code == 200 and answer in allowed.text


def test_dagster_graphql_cannot_be_reached_without_signing_in(proxy: dict) -> None:
    """What the sign-in is for: Dagster's GraphQL API launches and wipes runs for anyone."""
    client: httpx.Client = proxy["client"]
    query = {"query": "{ version }"}
    assert client.post("/dagster/graphql", json=query).status_code == 401
    answered = client.post("/dagster/graphql", json=query, auth=proxy["auth"])
    assert answered.status_code == 200 and answered.json()["data"]["version"]


def test_the_dashboard_websocket_passes_with_the_sign_in_only(proxy: dict) -> None:
    context = ssl.create_default_context(cafile=str(proxy["tls"] / "tradeloop.crt"))
    stream = proxy["base"].replace("https://", "wss://") + "/dashboard/_stcore/stream"
    with pytest.raises(InvalidStatus) as refused:
        connect(stream, ssl=context, open_timeout=20)
    assert refused.value.response.status_code == 401
    basic = "Basic " + base64.b64encode(":".join(proxy["auth"]).encode()).decode()  # a signed-in browser's
    with connect(stream, ssl=context, additional_headers={"Authorization": basic}, open_timeout=20) as ws:
        assert ws.response.status_code == 101


def test_jupyterlab_passes_through_with_its_own_token(proxy: dict) -> None:
    client: httpx.Client = proxy["client"]
    assert "version" in client.get("/jupyter/api").json()  # Lab's unauthenticated version probe
    assert client.get("/jupyter/api/contents").status_code == 403  # its own sign-in, not the proxy's
    listed = client.get("/jupyter/api/contents", headers={"Authorization": f"token {LAB_TOKEN}"})
    assert listed.status_code == 200 and "notebooks" in {item["name"] for item in listed.json()["content"]}


def test_sign_in_floods_are_refused_by_the_proxy(proxy: dict) -> None:
    """10 sign-ins a minute per address with a burst of 5: the proxy answers 429 itself (an HTML
    page, not the API's problem document) before the API's own limit of 20 a minute."""
    client: httpx.Client = proxy["client"]
    answers = [
        client.post("/auth/login", json={"username": "ana", "password": "wrong"}) for _ in range(10)
    ]  # the fixture's sign-in took one
    codes = [a.status_code for a in answers]
    assert codes[:4] == [401] * 4 and 429 in codes[4:7], codes
    refused = next(a for a in answers if a.status_code == 429)
    assert "application/problem+json" not in refused.headers.get("content-type", "")
    assert "nginx" in refused.text
