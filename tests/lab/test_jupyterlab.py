"""JupyterLab as `make lab` starts it (the project's configuration in jupyter/, found through
JUPYTER_CONFIG_PATH), as this test's user (root in CI: no --allow-root is passed), with token
auth, on a free port:

- the default viewer of .py files is jupytext's notebook, served by Lab's settings API;
- the contents API returns notebooks/*.py as notebooks and Lab's root shows notebooks/ and data/;
- Run All works: each code cell runs in a kernel started for the notebook (in notebooks/, as
  Lab starts it) through the kernel's websocket, and the notebooks find the lake of a
  *relative* TRADELOOP_DATA_DIR, resolved where Lab was started, and write under it;
- in chromium, a double-click on a notebook opens it as a notebook and Run All shows no
  traceback (a screenshot is kept in the test artifacts).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websocket
from jupyter_client.session import Session
from playwright.sync_api import sync_playwright

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_file
from tradeloop.research.notebooks import lab_environment, lab_link, notebook_path, run_notebook

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
TOKEN = "tradeloop-lab-test"
CHROMIUM = os.environ.get("TRADELOOP_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("TRADELOOP_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "lab"


@dataclass(frozen=True)
class Lab:
    port: int
    data: Path  # the data folder the notebooks must use (given to Lab as a relative path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, *, method: str = "GET", body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            text = reply.read()
        return json.loads(text) if text else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("lab")
    data = base / "data"
    lake = CandleLake(data / "lake")
    for symbol in ("BTC-USD", "ETH-USD"):
        import_file(lake, SAMPLE / f"coinbase__{symbol}__4h.parquet", key=SeriesKey("coinbase", symbol, "4h"))
    env = lab_environment(
        {
            **os.environ,
            "TRADELOOP_DATA_DIR": os.path.relpath(data, ROOT),  # relative: resolved where Lab starts
            "JUPYTER_CONFIG_DIR": str(base / "config"),  # no personal configuration of this machine's user
            "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(base / "user-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        }
    )
    autosave = base / "user-settings" / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
    autosave.parent.mkdir(parents=True)
    autosave.write_text('{"autosave": false}')  # the browser test must never save over notebooks/*.py
    env.pop("MPLBACKEND", None)
    port = free_port()
    log = (base / "lab.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={TOKEN}",
            f"--FileCheckpoints.checkpoint_dir={base / 'checkpoints'}",
        ],  # none in notebooks/
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Lab(port=port, data=data)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"JupyterLab exited {proc.returncode}:\n{(base / 'lab.log').read_text()}"
        try:
            server.api("/api/status")
            break
        except OSError:
            assert time.monotonic() < deadline, f"JupyterLab never answered:\n{(base / 'lab.log').read_text()}"
            time.sleep(0.3)
    try:
        yield server
    finally:
        proc.terminate()  # the server shuts its kernels down
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()


def run_cells(lab: Lab, kernel_id: str, sources: list[str]) -> list[str]:
    """Run ``sources`` one by one in the kernel through Lab's websocket (what Run All does);
    returns the text each printed. A cell that fails stops the run with its traceback."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{lab.port}/api/kernels/{kernel_id}/channels?token={TOKEN}", timeout=120
    )
    session = Session(key=b"", username="test")
    printed = []
    try:
        for number, code in enumerate(sources, start=1):
            request = session.msg(
                "execute_request",
                {
                    "code": code,
                    "silent": False,
                    "store_history": True,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            )
            ws.send(json.dumps({**request, "channel": "shell"}, default=str))
            reply, idle, text = None, False, []
            while reply is None or not idle:
                message = json.loads(ws.recv())
                if message["parent_header"].get("msg_id") != request["header"]["msg_id"]:
                    continue
                kind, content = message["msg_type"], message["content"]
                if kind == "execute_reply":
                    reply = content
                elif kind == "status":
                    idle = content["execution_state"] == "idle"
                elif kind == "stream":
                    text.append(content["text"])
                elif kind == "error":
                    pytest.fail(
                        f"cell {number} raised {content['ename']}: {content['evalue']}\n"
                        + "\n".join(content["traceback"])
                        + f"\n--- the cell:\n{code}"
                    )
            assert reply["status"] == "ok", f"cell {number}: {reply}"
            printed.append("".join(text))
    finally:
        ws.close()
    return printed


def test_python_files_open_with_jupytexts_notebook_viewer(lab: Lab) -> None:
    served = lab.api("/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    assert served["schema"]["properties"]["defaultViewers"]["default"] == {"python": "Jupytext Notebook"}


def test_lab_serves_the_repository_and_text_notebooks_as_notebooks(lab: Lab) -> None:
    root = {item["name"] for item in lab.api("/api/contents")["content"]}
    assert {"notebooks", "data", "pipelines"} <= root  # notebooks/ and data/runs/ are both reachable
    notebook = lab.api("/api/contents/notebooks/template.py?type=notebook")
    assert notebook["type"] == "notebook" and notebook["format"] == "json"
    cells = notebook["content"]["cells"]
    assert any("parameters" in c["metadata"].get("tags", []) for c in cells)
    assert notebook["content"]["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", ["template", "features"])
def test_run_all_from_lab_reads_and_writes_the_settings_data_folder(lab: Lab, name: str) -> None:
    notebook = lab.api(f"/api/contents/notebooks/{name}.py?type=notebook")
    sources = [c["source"] for c in notebook["content"]["cells"] if c["cell_type"] == "code"]
    before = sorted((ROOT / "notebooks").iterdir())
    session = lab.api(
        "/api/sessions",
        method="POST",
        body={"path": f"notebooks/{name}.py", "name": f"{name}.py", "type": "notebook", "kernel": {"name": "python3"}},
    )
    try:
        where = run_cells(lab, session["kernel"]["id"], ["import os; print(os.getcwd())"])
        assert where == [f"{ROOT / 'notebooks'}\n"]  # Lab starts the kernel in the notebook's folder
        run_cells(lab, session["kernel"]["id"], sources)
    finally:
        lab.api(f"/api/sessions/{session['id']}", method="DELETE")
    written = [p for p in (lab.data / "research").rglob("*") if p.is_file()]
    assert written, "the notebook wrote nothing under the settings' research folder"
    assert sorted((ROOT / "notebooks").iterdir()) == before  # nothing written in the kernel's folder


def test_an_executed_pipeline_notebook_opens_in_lab_at_its_dagster_link(lab: Lab) -> None:
    """What a pipeline asset keeps (run_notebook's executed copy) under a folder Lab serves,
    opened at the address Dagster's ``notebook_in_lab`` metadata gives."""
    output = ARTIFACTS / "executed" / "features.ipynb"  # inside the repository, as data/runs/<run id>/ is
    run_notebook(
        notebook_path("features"),
        output,
        {
            "lake_dir": str(lab.data / "lake"),
            "exchange": "coinbase",
            "symbols": ["BTC-USD"],
            "timeframe": "4h",
            "output_path": str(lab.data / "executed" / "features.parquet"),
        },
        cwd=ROOT,
    )
    link = lab_link(output, lab_url=lab.url, lab_root=ROOT)
    assert link == f"{lab.url}/lab/tree/{output.relative_to(ROOT).as_posix()}"
    served = lab.api(f"/api/contents/{output.relative_to(ROOT).as_posix()}?type=notebook")
    assert served["type"] == "notebook"  # not refused as a jupytext pair of a .py
    outputs = [o for c in served["content"]["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the executed copy, with its chart


def test_double_click_opens_a_notebook_and_run_all_shows_no_traceback(lab: Lab) -> None:
    assert Path(CHROMIUM).exists(), "chromium is missing: tests/services/ensure.sh installs Debian's package"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{lab.url}/lab/tree/notebooks?token={TOKEN}")  # the file browser on notebooks/
            page.locator(".jp-DirListing-item", has_text="template.py").dblclick(timeout=60_000)
            panel = page.locator(".jp-NotebookPanel").first
            panel.wait_for(timeout=30_000)  # a notebook, not the text editor
            assert page.locator(".jp-FileEditor").count() == 0
            # the kernel started and connected (Run All before that runs nothing)
            page.locator(".jp-StatusBar-Widget", has_text="Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            prompts = panel.locator(".jp-CodeCell .jp-InputPrompt")
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]"
                ".every(p => /\\[\\d+\\]/.test(p.textContent))",
                polling=500,
                timeout=90_000,
            )
            assert prompts.count() >= 3
            outputs = " ".join(panel.locator(".jp-OutputArea-output").all_inner_texts())
            assert "Traceback" not in outputs and "Error" not in outputs, outputs[:2000]
            charts = panel.locator(".jp-RenderedPlotly")
            assert charts.count() >= 3  # equity, trades on the price, monthly returns, ... drawn by plotly
            charts.first.scroll_into_view_if_needed()
            shot = ARTIFACTS / "template-run-all.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 30_000
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "template-run-all-failed.png"))
            raise
        finally:
            browser.close()
