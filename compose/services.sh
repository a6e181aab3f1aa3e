#!/usr/bin/env bash
# Makes sure the services Instaface needs are running on this machine — NATS with
# JetStream (127.0.0.1:4222), MariaDB/MySQL (127.0.0.1:3306, root without a password) and
# Redis (127.0.0.1:6379) — installing them with apt-get when missing (as root), starting
# them when stopped, and waiting until each answers. Says what it did.
#
# It also makes sure a compose parser is there for testkit/tests/compose.rs, which checks
# the Docker stack's files without a Docker engine: `docker compose` or `docker-compose`
# when installed, else docker-compose 1.29.2 (the last Python release; `config` needs no
# engine) from PyPI in a virtualenv of its own, INSTAFACE_VENV (/opt/instaface-venv). A
# failed install stops the script. Set SERVICES_COMPOSE_PARSER=0 to leave it out (the
# local launcher does: running the stack needs no parser).
#
# Used by the README's test command (so by .ci/run) and by compose/run-local.sh. Safe to
# run again: running services and an installed parser are left alone. Set
# SERVICES_QUIET=1 to print only what it changed, SERVICES_NATS=0 to only make sure
# nats-server is installed without starting the shared one on 4222 (the local launcher
# runs a NATS server of its own, with a user per role).
set -euo pipefail

say() { echo "services: $*"; }
quiet() { [[ "${SERVICES_QUIET:-0}" == 1 ]]; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port NAME PORT SECONDS
wait_port() {
  local name=$1 port=$2 secs=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    if port_open "$port"; then return 0; fi
    sleep 0.1
  done
  say "ERROR: $name did not start listening on 127.0.0.1:$port within ${secs}s"
  return 1
}

APT_UPDATED=0
apt_install() {
  if [[ $(id -u) != 0 ]]; then
    say "ERROR: $* missing and not root; install: apt-get install -y $*"
    exit 1
  fi
  if [[ $APT_UPDATED == 0 ]]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_redis() {
  if port_open 6379 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    quiet || say "redis is running"
    return
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  say "starting redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp >/dev/null
  wait_port redis 6379 20
  local i
  for ((i = 0; i < 100; i++)); do
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && { say "redis is up"; return; }
    sleep 0.1
  done
  say "ERROR: redis does not answer PING"; exit 1
}

# nats_bin: prints the nats-server binary, installing it when missing.
nats_bin() {
  local bin
  bin=$(command -v nats-server || true)
  [[ -z $bin && -x /usr/sbin/nats-server ]] && bin=/usr/sbin/nats-server
  if [[ -z $bin ]]; then
    apt_install nats-server >&2
    bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  fi
  echo "$bin"
}

ensure_nats() {
  if [[ "${SERVICES_NATS:-1}" == 0 ]]; then
    local bin
    bin=$(nats_bin)
    quiet || say "nats-server is installed ($bin); not starting the shared one (SERVICES_NATS=0)"
    return
  fi
  if port_open 4222; then
    quiet || say "nats is running"
    return
  fi
  local bin
  bin=$(nats_bin)
  say "starting nats-server (JetStream on)"
  mkdir -p /var/lib/nats-server
  if command -v start-stop-daemon >/dev/null; then
    start-stop-daemon --start --oknodo --background --exec "$bin" -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  else
    nohup "$bin" -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server >/var/log/nats-server.log 2>&1 &
  fi
  wait_port nats 4222 20
  say "nats is up"
}

mysql_answers() { mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1 \
  || mysql -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; }

ensure_mysql() {
  if port_open 3306 && mysql_answers; then
    quiet || say "mariadb is running"
    return
  fi
  if ! command -v mariadbd >/dev/null && [[ ! -x /usr/sbin/mariadbd ]]; then
    apt_install mariadb-server mariadb-client
  fi
  local bin
  bin=$(command -v mariadbd || echo /usr/sbin/mariadbd)
  if ! port_open 3306; then
    say "starting mariadb"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    if [[ ! -d /var/lib/mysql/mysql ]]; then
      say "initialising the mariadb data directory"
      mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    if command -v start-stop-daemon >/dev/null; then
      start-stop-daemon --start --oknodo --background --exec "$bin"
    else
      nohup "$bin" >/var/log/mariadbd.log 2>&1 &
    fi
    wait_port mariadb 3306 60
  fi
  local i
  for ((i = 0; i < 300; i++)); do
    if mysql_answers; then say "mariadb is up"; break; fi
    sleep 0.1
  done
  if ! mysql_answers; then
    # A fresh Debian install authenticates root by unix socket only; allow the TCP login
    # without a password that the defaults (MYSQL_URL=mysql://root@127.0.0.1:3306/…) use.
    say "allowing root over TCP without a password (development machine)"
    mariadb -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; FLUSH PRIVILEGES;" \
      || { say "ERROR: mariadb does not accept root@127.0.0.1"; exit 1; }
    mysql_answers || { say "ERROR: mariadb does not accept root@127.0.0.1"; exit 1; }
  fi
}

# A second MariaDB server, so sharded tests put their shards on two servers: the same
# binary with a data directory, socket and port of its own (127.0.0.1:3307), root without
# a password like the first, a small buffer pool. Needs root to create its directories.
MYSQL2_PORT=3307
MYSQL2_DIR=${INSTAFACE_MYSQL2_DIR:-/var/lib/instaface-mariadb2}
mysql2_answers() { mariadb -h 127.0.0.1 -P "$MYSQL2_PORT" -u root -e 'SELECT 1' >/dev/null 2>&1; }

ensure_mysql2() {
  if port_open "$MYSQL2_PORT" && mysql2_answers; then
    quiet || say "second mariadb (shards) is running on $MYSQL2_PORT"
    return
  fi
  if [[ $(id -u) != 0 ]]; then
    say "ERROR: the second mariadb (127.0.0.1:$MYSQL2_PORT) is not running and this is not root to start it"
    exit 1
  fi
  local bin
  bin=$(command -v mariadbd || echo /usr/sbin/mariadbd)
  mkdir -p /run/mysqld "$MYSQL2_DIR"
  chown mysql:mysql /run/mysqld "$MYSQL2_DIR" 2>/dev/null || true
  if [[ ! -d $MYSQL2_DIR/mysql ]]; then
    say "initialising the second mariadb's data directory ($MYSQL2_DIR)"
    mariadb-install-db --user=mysql --datadir="$MYSQL2_DIR" --auth-root-authentication-method=normal \
      --skip-test-db >/dev/null
  fi
  say "starting the second mariadb on $MYSQL2_PORT"
  nohup "$bin" --no-defaults --user=mysql --datadir="$MYSQL2_DIR" --port="$MYSQL2_PORT" \
    --bind-address=127.0.0.1 --socket=/run/mysqld/instaface-mariadb2.sock \
    --pid-file=/run/mysqld/instaface-mariadb2.pid --innodb-buffer-pool-size=64M \
    --log-error=/var/log/instaface-mariadb2.log >/dev/null 2>&1 &
  wait_port "second mariadb" "$MYSQL2_PORT" 60
  local i
  for ((i = 0; i < 300; i++)); do
    if mysql2_answers; then say "second mariadb is up"; return; fi
    sleep 0.1
  done
  say "ERROR: the second mariadb does not accept root@127.0.0.1:$MYSQL2_PORT (log: /var/log/instaface-mariadb2.log)"
  exit 1
}

COMPOSE_VENV=${INSTAFACE_VENV:-/opt/instaface-venv}

# compose_parser: prints the first compose client that answers `version`, as a command line.
compose_parser() {
  if docker compose version >/dev/null 2>&1; then echo "docker compose"
  elif docker-compose version >/dev/null 2>&1; then command -v docker-compose
  elif "$COMPOSE_VENV/bin/docker-compose" version >/dev/null 2>&1; then echo "$COMPOSE_VENV/bin/docker-compose"
  else return 1
  fi
}

ensure_compose_parser() {
  local found
  if found=$(compose_parser); then
    quiet || say "compose parser: $found"
    return
  fi
  say "installing docker-compose 1.29.2 from PyPI into $COMPOSE_VENV (the compose files' parser for testkit/tests/compose.rs)"
  if ! command -v python3 >/dev/null; then apt_install python3 python3-venv; fi
  mkdir -p "$(dirname "$COMPOSE_VENV")" 2>/dev/null || true
  if [[ ! -w $(dirname "$COMPOSE_VENV") ]]; then
    say "ERROR: cannot write $(dirname "$COMPOSE_VENV"); run as root or set INSTAFACE_VENV to a folder of yours"
    exit 1
  fi
  # Replaces a broken virtualenv, never a folder that is something else.
  if [[ -d $COMPOSE_VENV && -n $(ls -A "$COMPOSE_VENV") && ! -f $COMPOSE_VENV/pyvenv.cfg ]]; then
    say "ERROR: $COMPOSE_VENV is not a virtualenv; refusing to replace it (set INSTAFACE_VENV elsewhere)"
    exit 1
  fi
  rm -rf "$COMPOSE_VENV"
  if ! python3 -m venv "$COMPOSE_VENV" >/dev/null 2>&1; then
    # Debian's python3 makes virtualenvs only with python3-venv.
    rm -rf "$COMPOSE_VENV"
    apt_install python3-venv
    python3 -m venv "$COMPOSE_VENV" || { say "ERROR: python3 -m venv $COMPOSE_VENV failed"; exit 1; }
  fi
  local pip=("$COMPOSE_VENV/bin/python" -m pip --disable-pip-version-check --no-input -q) log
  log=$(mktemp)
  # PyYAML 5.4.1 (docker-compose wants < 6) has no wheel for Python >= 3.10 and its build
  # breaks with Cython 3: build it with Cython 0.29 and without build isolation. docker 7
  # and requests 2.32 broke docker-compose 1.29.2's engine client, so those stay below
  # (`config` needs no engine, but the parser should be a working client).
  if ! { "${pip[@]}" install "Cython==0.29.37" "setuptools==69.5.1" "wheel==0.43.0" \
        && "${pip[@]}" install --no-build-isolation "PyYAML==5.4.1" \
        && "${pip[@]}" install "docker-compose==1.29.2" "docker==6.1.3" "requests==2.31.0"; } >"$log" 2>&1 \
    || ! "$COMPOSE_VENV/bin/docker-compose" version >>"$log" 2>&1; then
    say "ERROR: installing docker-compose into $COMPOSE_VENV failed; pip said:"
    tail -n 40 "$log" | sed 's/^/services:   /' >&2
    rm -f "$log"
    rm -rf "$COMPOSE_VENV"
    exit 1
  fi
  rm -f "$log"
  say "compose parser installed: $("$COMPOSE_VENV/bin/docker-compose" version --short) in $COMPOSE_VENV"
}

# iproute2 (`ip`), which compose/partition.sh and the testkit's NatsMesh (tests/netsplit.rs)
# use to run NATS servers in network namespaces and cut the network between them. Without
# root there is nothing they can do anyway: say so and go on.
ensure_iproute2() {
  if command -v ip >/dev/null || [[ -x /usr/sbin/ip || -x /sbin/ip ]]; then
    quiet || say "iproute2 is installed"
    return
  fi
  if [[ $(id -u) != 0 ]]; then
    say "iproute2 is missing (apt-get install -y iproute2); the network-partition tests will skip"
    return
  fi
  apt_install iproute2
}

ensure_redis
ensure_nats
ensure_mysql
[[ "${SERVICES_MYSQL2:-1}" == 0 ]] || ensure_mysql2
ensure_iproute2
[[ "${SERVICES_COMPOSE_PARSER:-1}" == 0 ]] || ensure_compose_parser
if [[ "${SERVICES_NATS:-1}" == 0 ]]; then
  quiet || say "all services ready: mariadb 127.0.0.1:3306, redis 127.0.0.1:6379 (and nats-server installed)"
else
  quiet || say "all services ready: nats 127.0.0.1:4222, mariadb 127.0.0.1:3306 (and 3307), redis 127.0.0.1:6379"
fi
