"""deploy/deploy.sh: what it refuses, and the order of what it does (its dry run prints the
commands that change something: build, migrate before any service changes, then one service
at a time). Its health waits and its roll back need the stack's PostgreSQL, Redis and nginx
images, which no registry here serves; docs/operations.md says how to rehearse it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "deploy.sh"


def deploy(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, cwd=ROOT)  # fmt: skip


def env_file(tmp_path: Path, *, with_tls: bool = True) -> Path:
    tls, htpasswd = tmp_path / "tls", tmp_path / "htpasswd"
    if with_tls:
        subprocess.run([str(ROOT / "deploy" / "tls" / "make-cert.sh"), str(tls)], check=True, capture_output=True)
    subprocess.run([str(ROOT / "deploy" / "nginx" / "htpasswd.sh"), "ops", str(htpasswd)], input="pw\n", text=True,
                   check=True, capture_output=True)  # fmt: skip
    text = (ROOT / "deploy" / "docker" / "env.example").read_text()
    text = text.replace("POSTGRES_PASSWORD=\n", "POSTGRES_PASSWORD=abc\n").replace(
        "GRAFANA_ADMIN_PASSWORD=\n", "GRAFANA_ADMIN_PASSWORD=def\n"
    )
    path = tmp_path / "staging.env"
    path.write_text(text + f"TRADELOOP_TLS_DIR={tls}\nTRADELOOP_HTPASSWD={htpasswd}\n")
    return path


def test_an_unknown_environment_or_a_missing_env_file_is_refused(tmp_path: Path) -> None:
    refused = deploy("qa", env={})
    assert refused.returncode == 2 and "ENV 'qa' is not one of dev, staging, production" in refused.stderr
    missing = deploy("dev", env={"DEPLOY_ENV_FILE": str(tmp_path / "dev.env")})
    assert missing.returncode == 1 and f"cp deploy/docker/env.example {tmp_path / 'dev.env'}" in missing.stderr
    no_cert = deploy("staging", env={"DEPLOY_ENV_FILE": str(env_file(tmp_path, with_tls=False))})
    assert no_cert.returncode == 1 and "run deploy/tls/make-cert.sh" in no_cert.stderr


def test_it_builds_migrates_and_then_restarts_one_service_at_a_time(tmp_path: Path) -> None:
    done = deploy("staging", env={"DEPLOY_ENV_FILE": str(env_file(tmp_path)), "DEPLOY_DRY_RUN": "1"})
    assert done.returncode == 0, done.stderr
    commands = [line[2:] for line in done.stdout.splitlines() if line.startswith("+ ")]
    commands = [c for c in commands if not c.endswith("tradeloop:staging-previous")]  # when one is in service
    assert commands[0].startswith("docker build -f ") and "-t tradeloop:staging-candidate" in commands[0]
    assert "--profile staging up -d postgres redis" in commands[1]
    assert "run --rm --no-deps -T api python -c" in commands[2]  # the migration, with the new image
    assert commands[3] == "docker tag tradeloop:staging-candidate tradeloop:staging"
    restarted = [c.rsplit(" ", 1)[1] for c in commands if "up -d --no-deps --force-recreate" in c]
    assert restarted == ["api", "worker", "dashboard", "dagster-webserver", "dagster-daemon", "engine-testnet"]
    assert commands[-2].endswith("--profile staging up -d")  # then nginx and monitoring
