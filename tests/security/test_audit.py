"""make audit (deploy/security/audit.py): the real pip-audit against a loopback OSV API, the real
bandit against real files; a finding fails until it is fixed or accepted with its reason and
count, a stale acceptance fails, and an unreachable vulnerability service never passes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AUDIT = ROOT / "deploy" / "security" / "audit.py"
VULN = "GHSA-tl00-test-0001"
# a hash-pinned lock of two packages (pip-audit checks the pins, it downloads nothing)
LOCK = "".join(
    f"{pin} \\\n    --hash=sha256:{digit * 64}\n" for pin, digit in (("six==1.16.0", "a"), ("idna==3.7", "b"))
)


class OsvHandler(BaseHTTPRequestHandler):
    """OSV's POST /v1/query: six 1.16.0 has one vulnerability, fixed in 1.17.0; nothing else has any."""

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.queries.append(query)  # type: ignore[attr-defined]
        body: dict = {}
        if query["package"]["name"] == "six" and query["version"] == "1.16.0":
            affected = {"package": {"name": "six", "ecosystem": "PyPI"}}
            affected["ranges"] = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.17.0"}]}]
            body = {"vulns": [{"id": VULN, "summary": "test advisory", "affected": [affected]}]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def osv_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OsvHandler)
    server.queries = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    server.shutdown()
    server.server_close()


def audit(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "XDG_CACHE_HOME": str(tmp / "cache")}  # no cached answers
    return subprocess.run(
        [sys.executable, str(AUDIT), *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_a_known_vulnerability_fails_the_audit_naming_it_until_accepted_with_a_reason(
    tmp_path: Path, osv_url: str
) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(LOCK)
    accepted = tmp_path / "accepted.toml"
    accepted.write_text("")
    args = ("--only", "pip-audit", "--lock", str(lock), "--osv-url", osv_url, "--accepted", str(accepted))

    found = audit(*args, tmp=tmp_path)
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"six 1.16.0: {VULN} (fixed in: 1.17.0)" in found.stdout
    assert "idna" not in found.stdout

    accepted.write_text(f'[[pip-audit]]\nid = "{VULN}"\npackage = "six"\nreason = "not imported at run time"\n')
    passed = audit(*args, tmp=tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "2 pinned packages, no unaccepted known vulnerability (1 accepted)" in passed.stdout

    accepted.write_text(f'[[pip-audit]]\nid = "{VULN}"\npackage = "six"\nreason = ""\n')
    unexplained = audit(*args, tmp=tmp_path)
    assert unexplained.returncode != 0 and "lacks reason" in unexplained.stderr

    accepted.write_text('[[pip-audit]]\nid = "PYSEC-0000-1"\npackage = "idna"\nreason = "was needed once"\n')
    stale = audit(*args, tmp=tmp_path)
    assert stale.returncode == 1
    assert "accepted PYSEC-0000-1 (idna) no longer applies" in stale.stdout and VULN in stale.stdout


def test_an_unreachable_vulnerability_service_says_the_lock_was_not_audited_and_fails_where_required(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(LOCK)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    unreachable = ("--only", "pip-audit", "--lock", str(lock), "--osv-url", f"http://127.0.0.1:{closed}/v1/query")
    required = audit(*unreachable, "--require-service", tmp=tmp_path)
    assert required.returncode == 2, required.stdout + required.stderr
    assert "could not be reached, so requirements.lock was NOT audited" in required.stderr
    assert "AUDIT_REQUIRED=1" in required.stderr
    warned = audit(*unreachable, tmp=tmp_path)  # a machine whose proxy passes only the index: a loud warning
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert "WARNING: the vulnerability service could not be reached" in warned.stderr
    assert "no unaccepted known vulnerability" not in warned.stdout  # never reported as clean

    skipped = audit("--only", "pip-audit", "--lock", str(lock), "--offline", tmp=tmp_path)
    assert skipped.returncode == 0 and "SKIPPED (AUDIT_OFFLINE)" in skipped.stdout
    assert "NOT checked" in skipped.stdout


def test_bandit_findings_fail_unless_accepted_with_their_exact_count(tmp_path: Path) -> None:
    code = tmp_path / "pkg" / "runner.py"
    code.parent.mkdir()
    code.write_text("import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n")
    accepted = tmp_path / "accepted.toml"
    accepted.write_text("")
    args = ("--only", "bandit", "--root", str(tmp_path), "--paths", "pkg", "--accepted", str(accepted))

    found = audit(*args, tmp=tmp_path)
    assert found.returncode == 1
    assert "pkg/runner.py:5: B602" in found.stdout and "pkg/runner.py:1: B404" in found.stdout

    entry = '[[bandit]]\ntest = "{test}"\nreason = "reviewed"\nfiles = {{ "pkg/runner.py" = {count} }}\n'
    accepted.write_text(entry.format(test="B404", count=1) + entry.format(test="B602", count=1))
    assert audit(*args, tmp=tmp_path).returncode == 0

    code.write_text(code.read_text() + "\n\ndef again(cmd):\n    return subprocess.call(cmd, shell=True)\n")
    more = audit(*args, tmp=tmp_path)
    assert more.returncode == 1 and "B602" in more.stdout and "(2 found, 1 accepted)" in more.stdout

    accepted.write_text(entry.format(test="B404", count=1) + entry.format(test="B602", count=3))
    stale = audit(*args, tmp=tmp_path)
    assert stale.returncode == 1 and "accepted 3 x B602 in pkg/runner.py, found 2" in stale.stdout


def test_the_code_has_no_security_finding_but_those_accepted_with_a_reason(tmp_path: Path) -> None:
    done = audit("--only", "bandit", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "each accepted with a reason" in done.stdout
