"""``make audit`` (run by ``make test``): known vulnerabilities in the pinned dependencies and a
security lint of the code; every finding is fixed or accepted, with its reason, in
``deploy/security/accepted.toml``.

Rules:

* **pip-audit** looks up every package pinned in ``requirements.lock`` (hash-checked, no pip
  resolution) in PyPI's vulnerability data, or in an OSV API given with ``--osv-url`` (a
  mirror). A vulnerability fails the audit unless accepted by id (``[[pip-audit]]``). A package
  the service could not be asked about is never counted as clean: when no package could be
  looked up (no network, a proxy that serves only the package index), the audit says loudly
  that the service is unreachable and the lock was *not* audited. With ``--require-service``
  (``AUDIT_REQUIRED=1``, set in the hosted CI workflow, where the service is reachable) that
  fails the audit; without it (a machine whose proxy passes only the package index, like the
  development machine) the warning is printed and bandit's result decides. ``--offline``
  (``AUDIT_OFFLINE=1``) skips the lookup and says so.
* **bandit** scans ``tradeloop/ live/ api/ pipelines/ app/``. A finding fails the audit unless a
  ``[[bandit]]`` entry accepts its test in its file; the count per file is exact, so one more
  finding of an accepted kind in the same file fails until it is reviewed and counted.
* An accepted entry that matches nothing any more is stale and fails the audit: the file lists
  exactly what is accepted today.

Exit status: 0 clean, 1 a finding (or a stale entry), 2 a tool or the service could not run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ACCEPTED = Path(__file__).with_name("accepted.toml")
SCANNED = ("tradeloop", "live", "api", "pipelines", "app")
BIN = Path(sys.executable).parent  # pip-audit and bandit live beside this interpreter
TIMEOUT_S = 900


def load_accepted(path: Path) -> tuple[dict[str, str], dict[tuple[str, str], int]]:
    """``accepted.toml``: vulnerability ids -> package; (bandit test, file) -> count. Each entry
    must say why (``reason``)."""
    doc = tomllib.loads(path.read_text())
    vulns: dict[str, str] = {}
    for entry in doc.get("pip-audit", []):
        _need(entry, ("id", "package", "reason"), path)
        vulns[entry["id"]] = entry["package"].lower()
    findings: dict[tuple[str, str], int] = {}
    for entry in doc.get("bandit", []):
        _need(entry, ("test", "files", "reason"), path)
        for file, count in entry["files"].items():
            if not isinstance(count, int) or count < 1:
                raise SystemExit(f"{path}: [[bandit]] {entry['test']} files.{file} = {count!r}: give the count (>= 1)")
            findings[(entry["test"], file)] = count
    return vulns, findings


def _need(entry: dict, keys: tuple[str, ...], path: Path) -> None:
    missing = [k for k in keys if not entry.get(k)]
    if missing:
        raise SystemExit(f"{path}: entry {entry} lacks {', '.join(missing)}; every accepted finding says why")


def pip_audit(lock: Path, accepted: dict[str, str], *, osv_url: str | None = None) -> int:
    service = ["-s", "osv", "--osv-url", osv_url] if osv_url else []  # an OSV API (a mirror) instead of PyPI's
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "pip-audit.json"
        done = subprocess.run(
            [
                str(BIN / "pip-audit"),
                *("-r", str(lock), "--require-hashes", "--disable-pip", "--progress-spinner", "off"),
                *("--timeout", "20", "-f", "json", "-o", str(report), *service),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        data = json.loads(report.read_text()) if report.exists() and report.stat().st_size else None
    if data is None:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return _unreachable(f"pip-audit stopped (exit {done.returncode}): {tail}")
    deps = data.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    if deps and len(skipped) == len(deps):
        return _unreachable(f"no package could be looked up; the first said: {skipped[0]['skip_reason']}")
    status = 0
    for dep in skipped:
        print(f"pip-audit: {dep['name']} {dep.get('version', '')} was not audited: {dep['skip_reason']}")
        status = 1
    found = {(v["id"], d["name"].lower()): (d, v) for d in deps for v in d.get("vulns", [])}
    for (vid, name), (dep, vuln) in sorted(found.items()):
        if accepted.get(vid) == name:
            continue
        fixes = ", ".join(vuln.get("fix_versions") or []) or "none yet"
        print(f"pip-audit: {name} {dep['version']}: {vid} (fixed in: {fixes}); upgrade it, or accept it with a reason")
        status = 1
    for vid, name in sorted(accepted.items()):
        if (vid, name) not in found:
            print(f"pip-audit: accepted {vid} ({name}) no longer applies; remove it from {ACCEPTED.name}")
            status = 1
    if status == 0:
        print(f"pip-audit: {len(deps)} pinned packages, no unaccepted known vulnerability ({len(accepted)} accepted)")
    return status


REQUIRE_SERVICE = False  # --require-service: an unreachable service fails the audit


def _unreachable(why: str) -> int:
    print(
        "pip-audit: WARNING: the vulnerability service could not be reached, so requirements.lock was NOT audited "
        f"({why}). Run make audit where PyPI's JSON API is reachable (the hosted CI does, with AUDIT_REQUIRED=1), "
        "or point it at an OSV mirror (make audit AUDIT_OSV_URL=...); AUDIT_OFFLINE=1 skips the lookup.",
        file=sys.stderr,
    )
    return 2 if REQUIRE_SERVICE else 0


def bandit(paths: list[Path], accepted: dict[tuple[str, str], int], *, root: Path) -> int:
    done = subprocess.run(
        [str(BIN / "bandit"), "-r", *map(str, paths), "-f", "json", "-q"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=TIMEOUT_S,
        check=False,
    )
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError:
        print(f"bandit did not run (exit {done.returncode}): {done.stderr.strip()[-500:]}", file=sys.stderr)
        return 2
    if data.get("errors"):
        print(f"bandit could not read: {data['errors']}", file=sys.stderr)
        return 2
    results = data.get("results", [])
    counts = Counter((r["test_id"], Path(r["filename"]).as_posix()) for r in results)
    status = 0
    for r in sorted(results, key=lambda r: (r["filename"], r["line_number"])):
        key = (r["test_id"], Path(r["filename"]).as_posix())
        if counts[key] > accepted.get(key, 0):
            print(
                f"bandit: {key[1]}:{r['line_number']}: {r['test_id']} {r['test_name']} "
                f"({r['issue_severity'].lower()}): {r['issue_text']} - fix it, or accept it with a reason "
                f"({counts[key]} found, {accepted.get(key, 0)} accepted)"
            )
            status = 1
    for key, count in sorted(accepted.items()):
        if counts[key] < count:
            print(
                f"bandit: accepted {count} x {key[0]} in {key[1]}, found {counts[key]}; lower the count in "
                f"{ACCEPTED.name} (stale)"
            )
            status = 1
    if status == 0:
        print(f"bandit: {len(results)} findings in {', '.join(map(str, paths))}, each accepted with a reason")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accepted", type=Path, default=ACCEPTED, help="the accepted findings (TOML)")
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    parser.add_argument("--root", type=Path, default=ROOT, help="the folder bandit's paths are relative to")
    parser.add_argument("--paths", nargs="+", default=list(SCANNED), help="folders bandit scans")
    parser.add_argument("--only", choices=("pip-audit", "bandit"), help="run one of the two")
    parser.add_argument("--offline", action="store_true", help="skip pip-audit's lookup (says so)")
    parser.add_argument("--osv-url", help="look vulnerabilities up in this OSV API (a mirror) instead of PyPI's")
    parser.add_argument(
        "--require-service", action="store_true", help="an unreachable vulnerability service fails the audit"
    )
    args = parser.parse_args(argv)
    global REQUIRE_SERVICE
    REQUIRE_SERVICE = args.require_service
    vulns, findings = load_accepted(args.accepted)
    statuses = []
    if args.only in (None, "bandit"):
        statuses.append(bandit([Path(p) for p in args.paths], findings, root=args.root))
    if args.only in (None, "pip-audit"):
        if args.offline:
            print("pip-audit: SKIPPED (AUDIT_OFFLINE): requirements.lock was NOT checked for known vulnerabilities")
        else:
            statuses.append(pip_audit(args.lock, vulns, osv_url=args.osv_url))
    return max(statuses, default=0)


if __name__ == "__main__":
    sys.exit(main())
