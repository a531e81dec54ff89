#!/usr/bin/env bash
# Make sure the real servers the tests talk to are up: PostgreSQL on 127.0.0.1:5432 and
# Redis on 127.0.0.1:6379 (or whatever TRADELOOP_TEST_DATABASE_URL / TRADELOOP_TEST_REDIS_URL
# name; then this script leaves them alone); and that the OIDC provider and chromium are
# installed. A machine that has them installed but stopped gets them started; one without
# them gets Debian's packages (needs root and apt).
set -u
PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_PORT=6379

have() { command -v "$1" > /dev/null 2>&1; }
pg_up() { (exec 3<>"/dev/tcp/$PG_HOST/$PG_PORT") 2> /dev/null; }
redis_up() { (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2> /dev/null; }
apt_install() {
  if [ "$(id -u)" = 0 ] && have apt-get; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" > /dev/null || { apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" > /dev/null; }
  fi
}

if [ -z "${TRADELOOP_TEST_DATABASE_URL:-}" ] && ! pg_up; then
  echo "tests: starting PostgreSQL on $PG_HOST:$PG_PORT"
  have pg_ctlcluster || apt_install postgresql
  if have pg_ctlcluster && [ -n "$(ls /etc/postgresql 2> /dev/null)" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  fi
  for _ in $(seq 30); do pg_up && break; sleep 1; done
  pg_up || { echo "tests: PostgreSQL is not reachable on $PG_HOST:$PG_PORT; set TRADELOOP_TEST_DATABASE_URL" >&2; exit 1; }
fi

if [ -z "${TRADELOOP_TEST_REDIS_URL:-}" ] && ! redis_up; then
  echo "tests: starting Redis on 127.0.0.1:$REDIS_PORT"
  have redis-server || apt_install redis-server
  have redis-server && redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no
  for _ in $(seq 30); do redis_up && break; sleep 0.5; done
  redis_up || { echo "tests: Redis is not reachable on 127.0.0.1:$REDIS_PORT; set TRADELOOP_TEST_REDIS_URL" >&2; exit 1; }
fi

# the single sign-on tests run a real OIDC provider (oidc-provider on Node.js), installed into a
# cache folder outside the repository by tests/oidc/install.sh
if ! have node || ! have npm; then
  echo "tests: installing Debian's Node.js and npm for the OIDC provider"
  apt_install nodejs npm
fi
bash "$(dirname "$0")/../oidc/install.sh" > /dev/null || { echo "tests: the OIDC provider could not be installed (tests/oidc/install.sh)" >&2; exit 1; }

# the browser check drives Debian's chromium (the tests never download a browser)
if [ -z "${TRADELOOP_TEST_CHROMIUM:-}" ] && ! have chromium; then
  echo "tests: installing Debian's chromium for the browser check"
  apt_install chromium
  have chromium || { echo "tests: chromium is missing; install it or set TRADELOOP_TEST_CHROMIUM to a Chromium binary" >&2; exit 1; }
fi
# the monitoring tests (tests/deploy) run Debian's Prometheus with promtool and its Alertmanager
# with amtool, on loopback ports of their own
if ! have prometheus || ! have promtool; then
  echo "tests: installing Debian's prometheus (prometheus, promtool) for the monitoring tests"
  apt_install --no-install-recommends prometheus
  { have prometheus && have promtool; } || { echo "tests: prometheus and promtool are missing; install Debian's prometheus" >&2; exit 1; }
fi
if ! have prometheus-alertmanager || ! have amtool; then
  echo "tests: installing Debian's prometheus-alertmanager (alertmanager, amtool) for the monitoring tests"
  apt_install --no-install-recommends prometheus-alertmanager
  { have prometheus-alertmanager && have amtool; } || { echo "tests: the alertmanager or amtool is missing; install Debian's prometheus-alertmanager" >&2; exit 1; }
fi
# the backup tests (tests/live/test_backup_restore.py) run Debian's restic, and pg_dump / pg_restore
# from the PostgreSQL client (installed with the server, needed alone when the server is elsewhere)
if ! have restic; then
  echo "tests: installing Debian's restic for the backup tests"
  apt_install restic
  have restic || { echo "tests: restic is missing; install Debian's restic" >&2; exit 1; }
fi
if ! have pg_dump || ! have pg_restore; then
  echo "tests: installing Debian's postgresql-client (pg_dump, pg_restore) for the backup tests"
  apt_install postgresql-client
  { have pg_dump && have pg_restore; } || { echo "tests: pg_dump or pg_restore is missing; install Debian's postgresql-client" >&2; exit 1; }
fi
# the supervisor test (tests/deploy/test_supervisor.py) runs Debian's supervisord on deploy/supervisor
if ! have supervisord || ! have supervisorctl; then
  echo "tests: installing Debian's supervisor for the restart tests"
  apt_install --no-install-recommends supervisor
  { have supervisord && have supervisorctl; } || { echo "tests: supervisord is missing; install Debian's supervisor" >&2; exit 1; }
fi
# the container tests (tests/deploy/test_containers.py) build and run images with Debian's Docker,
# check the compose file with its docker-compose and make their base image with debootstrap; dockerd
# is started here when it does not answer, niced as the tests are (its containers inherit it)
if ! have docker || ! have dockerd || ! have docker-compose || ! have debootstrap; then
  echo "tests: installing Debian's docker.io, docker-compose and debootstrap for the container tests"
  apt_install --no-install-recommends docker.io docker-compose debootstrap
  { have docker && have dockerd && have docker-compose && have debootstrap; } || { echo "tests: docker, dockerd, docker-compose or debootstrap is missing; install Debian's docker.io, docker-compose and debootstrap" >&2; exit 1; }
fi
if ! docker info > /dev/null 2>&1; then
  echo "tests: starting dockerd (log: /var/log/tradeloop-dockerd.log)"
  [ "$(id -u)" = 0 ] && setsid nice -n 19 dockerd > /var/log/tradeloop-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 60); do docker info > /dev/null 2>&1 && break; sleep 0.5; done
  docker info > /dev/null 2>&1 || { echo "tests: the Docker daemon does not answer (docker info); start dockerd as root" >&2; exit 1; }
fi
# the proxy tests (tests/deploy/test_nginx.py) run Debian's nginx on loopback ports of their own
if ! have nginx; then
  echo "tests: installing Debian's nginx for the proxy tests"
  apt_install --no-install-recommends nginx
  have nginx || { echo "tests: nginx is missing; install Debian's nginx" >&2; exit 1; }
fi
exit 0
