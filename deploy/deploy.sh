#!/usr/bin/env bash
# Deploy the checkout to the compose stack of one environment, and roll back when a service
# does not come up healthy. docs/operations.md, "Deploy and roll back".
#
#   deploy/deploy.sh ENV          ENV: dev (JupyterLab and a paper engine on the lake),
#                                 staging (an engine on the exchange's testnet) or production
#                                 (no engine in compose.yaml: deploy/local/production.compose.yaml
#                                 adds one per session, named in DEPLOY_SERVICES)
#
# 1. reads deploy/local/ENV.env (made from deploy/docker/env.example; git ignores deploy/local)
#    and checks the TLS certificate and the htpasswd file nginx needs are there;
# 2. builds the image (deploy/docker/Dockerfile) as tradeloop:ENV-candidate; the image in
#    service now, tradeloop:ENV, is kept as tradeloop:ENV-previous;
# 3. starts PostgreSQL and Redis if they are not running, and migrates the database with the
#    new image (one container, before any service changes; Alembic, under the advisory lock
#    every process takes);
# 4. points tradeloop:ENV at the new image and recreates the tradeloop services one at a time,
#    each waited for until its health check passes (a process that restarts or stays
#    unhealthy past DEPLOY_HEALTH_TIMEOUT_S, 300 s by default, fails the deploy);
# 5. on a failure, points tradeloop:ENV back at the previous image and recreates the services
#    it had changed, one at a time, waiting for each; exits 1. A migration cannot be undone
#    by the old image: when the schema changed, the script says so, and the database comes
#    back from the backup taken before (docs/operations.md);
# 6. last, `up -d` for everything else of the profile (nginx, monitoring) and prints the state.
#
# Needs docker with compose (the plugin, or docker-compose). DEPLOY_ENV_FILE names another env
# file; DEPLOY_DRY_RUN=1 prints the commands that would change something instead of running them.
set -euo pipefail

usage() { echo "usage: deploy/deploy.sh dev|staging|production" >&2; exit 2; }
[ $# -eq 1 ] || usage
env_name="$1"
case "$env_name" in
  dev) profile=(--profile dev) services=(api worker dashboard dagster-webserver dagster-daemon engine jupyterlab) ;;
  staging) profile=(--profile staging) services=(api worker dashboard dagster-webserver dagster-daemon engine-testnet) ;;
  production) profile=() services=(api worker dashboard dagster-webserver dagster-daemon) ;;
  *) echo "deploy: ENV '$env_name' is not one of dev, staging, production" >&2; usage ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_file="${DEPLOY_ENV_FILE:-$root/deploy/local/$env_name.env}"
compose_file="$root/deploy/docker/compose.yaml"
timeout_s="${DEPLOY_HEALTH_TIMEOUT_S:-300}"
say() { printf 'deploy %s: %s\n' "$env_name" "$*"; }
fail() { printf 'deploy %s: %s\n' "$env_name" "$*" >&2; exit 1; }
run() { if [ -n "${DEPLOY_DRY_RUN:-}" ]; then printf '+ %s\n' "$*"; else "$@"; fi; }

[ -f "$env_file" ] || fail "$env_file is missing: cp deploy/docker/env.example $env_file and set its passwords"
tls_dir="$root/deploy/local/tls" htpasswd="$root/deploy/local/htpasswd"
set -a
# shellcheck disable=SC1090
. "$env_file"
set +a
tls_dir="${TRADELOOP_TLS_DIR:-$tls_dir}" htpasswd="${TRADELOOP_HTPASSWD:-$htpasswd}"
[ -s "$tls_dir/tradeloop.crt" ] && [ -s "$tls_dir/tradeloop.key" ] \
  || fail "no certificate in $tls_dir: run deploy/tls/make-cert.sh (or put a real one there: docs/operations.md)"
[ -s "$htpasswd" ] || fail "no users in $htpasswd: run deploy/nginx/htpasswd.sh USER"

if docker compose version > /dev/null 2>&1; then compose_cmd=(docker compose); else compose_cmd=(docker-compose); fi
compose_cmd+=(--project-name "${COMPOSE_PROJECT_NAME:-tradeloop}" --env-file "$env_file" -f "$compose_file")
# an environment's own services (production's engines, one per session) live in
# deploy/local/ENV.compose.yaml, and DEPLOY_SERVICES (env file) names those to roll out
extra_file="$root/deploy/local/$env_name.compose.yaml"
[ -f "$extra_file" ] && compose_cmd+=(-f "$extra_file")
read -r -a extra_services <<< "${DEPLOY_SERVICES:-}"
services+=("${extra_services[@]}")
compose() { run "${compose_cmd[@]}" "${profile[@]}" "$@"; }

image="${TRADELOOP_IMAGE:-tradeloop:$env_name}"
export TRADELOOP_IMAGE="$image"
candidate="$image-candidate" previous="$image-previous"

# --------------------------------------------------------------- build
say "building $candidate from $(git -C "$root" rev-parse --short HEAD 2> /dev/null || echo 'the checkout')"
run docker build -f "$root/deploy/docker/Dockerfile" --build-arg "BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}" \
  --label "org.opencontainers.image.revision=$(git -C "$root" rev-parse HEAD 2> /dev/null || echo unknown)" \
  -t "$candidate" "$root"
had_previous=0
if docker image inspect "$image" > /dev/null 2>&1; then
  run docker tag "$image" "$previous"
  had_previous=1
fi

# --------------------------------------------------------------- health
container_of() { "${compose_cmd[@]}" "${profile[@]}" ps -q "$1" 2> /dev/null | head -1; }

wait_healthy() {  # SERVICE: its container's health check passes within timeout_s
  [ -n "${DEPLOY_DRY_RUN:-}" ] && return 0
  local service="$1" deadline=$((SECONDS + timeout_s)) id state restarts
  while :; do
    id="$(container_of "$service")"
    if [ -n "$id" ]; then
      state="$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")"
      restarts="$(docker inspect -f '{{.RestartCount}}' "$id")"
      case "$state" in
        "running healthy" | "running none") return 0 ;;
      esac
      [ "$restarts" = 0 ] || { say "$service restarted $restarts time(s) (state: $state)"; return 1; }
    fi
    [ $SECONDS -lt $deadline ] || { say "$service is not healthy after ${timeout_s}s (state: ${state:-no container})"; return 1; }
    sleep 3
  done
}

# --------------------------------------------------------------- stores and migration
compose up -d postgres redis
for store in postgres redis; do wait_healthy "$store" || fail "$store did not become healthy; nothing was changed"; done
revision() {  # the database's schema revision, read with IMAGE
  TRADELOOP_IMAGE="$1" "${compose_cmd[@]}" run --rm --no-deps -T api python -c '
from sqlalchemy import create_engine
from alembic.runtime.migration import MigrationContext
from tradeloop.ops.database import VERSION_TABLE
from tradeloop.settings import get_settings
with create_engine(get_settings().effective_database_url).connect() as conn:
    print(MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision())
' 2> /dev/null | tail -1 || true
}
before="$( [ -n "${DEPLOY_DRY_RUN:-}" ] || revision "$candidate")"
say "migrating the database (schema ${before:-empty})"
TRADELOOP_IMAGE="$candidate" compose run --rm --no-deps -T api python -c '
from tradeloop.ops import OpsStore
from tradeloop.settings import get_settings
OpsStore.open(get_settings().effective_database_url).close()
' || fail "the migration failed; no service was changed (the image in service is still $image)"
after="$( [ -n "${DEPLOY_DRY_RUN:-}" ] || revision "$candidate")"
[ "$before" = "$after" ] || say "schema $before -> $after"

# --------------------------------------------------------------- roll out, one at a time
rollback() {
  local failed="$1"; shift
  if [ "$had_previous" = 0 ]; then
    fail "$failed failed on the first deploy: there is no previous image to return to (logs: ${compose_cmd[*]} logs $failed)"
  fi
  say "rolling back to the previous image ($previous)"
  run docker tag "$previous" "$image"
  local service
  for service in "$@"; do
    compose up -d --no-deps --force-recreate "$service"
    wait_healthy "$service" || say "$service is not healthy on the previous image either: look at its log"
  done
  if [ "$before" != "$after" ]; then
    say "the migration changed the schema ($before -> $after) and the previous image may refuse it:" \
      "restore the backup taken before this deploy (docs/operations.md, Restoring)"
  fi
  fail "$failed did not become healthy on the new image; rolled back (logs: ${compose_cmd[*]} logs $failed)"
}

run docker tag "$candidate" "$image"
done_services=()
for service in "${services[@]}"; do
  say "restarting $service"
  done_services+=("$service")
  compose up -d --no-deps --force-recreate "$service"
  wait_healthy "$service" || rollback "$service" "${done_services[@]}"
done

# --------------------------------------------------------------- the rest of the profile
compose up -d
compose ps
say "deployed $image ($(git -C "$root" rev-parse --short HEAD 2> /dev/null || echo 'the checkout'))"
