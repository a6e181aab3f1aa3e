#!/usr/bin/env bash
# Makes sure the services Instaface needs are running on this machine — NATS with
# JetStream (127.0.0.1:4222), MariaDB/MySQL (127.0.0.1:3306, root without a password) and
# Redis (127.0.0.1:6379) — installing them with apt-get when missing (as root), starting
# them when stopped, and waiting until each answers. Says what it did.
#
# Used by .ci/run and by compose/run-local.sh. Safe to run again: running services are
# left alone. Set SERVICES_QUIET=1 to print only what it changed.
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

ensure_nats() {
  if port_open 4222; then
    quiet || say "nats is running"
    return
  fi
  local bin
  bin=$(command -v nats-server || true)
  [[ -z $bin && -x /usr/sbin/nats-server ]] && bin=/usr/sbin/nats-server
  if [[ -z $bin ]]; then
    apt_install nats-server
    bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  fi
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

ensure_redis
ensure_nats
ensure_mysql
quiet || say "all services ready: nats 127.0.0.1:4222, mariadb 127.0.0.1:3306, redis 127.0.0.1:6379"
