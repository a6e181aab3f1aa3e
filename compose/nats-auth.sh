#!/bin/sh
# The NATS users of an Instaface stack, one per role, and what each may publish and
# subscribe to: the one place they are written down. The Docker stack's NATS servers
# (compose/docker-compose.yml, and the three of docker-compose.nats-cluster.yml) start
# through `serve`, the local launcher (compose/run-local.sh) through `secrets` and
# `config`, and testkit/tests/nats_roles.rs checks the configuration it writes against a
# real nats-server. POSIX sh: it runs in the nats:alpine image too.
#
# Usage:
#   sh compose/nats-auth.sh config [FILE]   write the nats-server configuration (an
#                                           `authorization` block) to FILE (mode 0600)
#                                           or to standard output
#   sh compose/nats-auth.sh serve [ARG…]    write it to NATS_AUTH_CONF (default
#                                           /tmp/instaface-nats-auth.conf) and run
#                                           `nats-server -c that-file ARG…`
#   sh compose/nats-auth.sh secrets FILE    create FILE (mode 0600) with a fresh random
#                                           password for every role; an existing FILE is
#                                           kept, and only a missing password is added
#   sh compose/nats-auth.sh roles           the roles, one a line: ROLE INBOX_PREFIX (the
#                                           NATS_INBOX_PREFIX its processes run with)
#
# Environment (config, serve):
#   INSTAFACE_PREFIX        the subject prefix P (default instaface)
#   NATS_NODE_PASSWORD, NATS_GATEWAY_PASSWORD, NATS_BOT_PASSWORD, NATS_OBSERVER_PASSWORD
#                           the roles' passwords (required; at least 12 characters of
#                           A-Z a-z 0-9 . _ ~ -, since they go into nats:// URLs)
#
# The roles (user name = role; each process sets NATS_INBOX_PREFIX=_INBOX_<role>, so
# replies to its requests come to inboxes only its own role may subscribe to):
#   node      the graph nodes: publish heartbeats, votes, invalidations, events and
#             P.node.*.> (acks, vote replies, fills, reads at the leader, transfers);
#             subscribe to those, P.control.unplug, P.graph.read and P.graph.reads (queue group readers
#             only), the micro service's $SRV.> and its inboxes; answer requests.
#   gateway   publish reads (P.graph.read, P.graph.reads, P.node.*.read), writes (P.node.*.write),
#             status requests (P.node.*.status) and P.control.unplug; subscribe to
#             P.heartbeat and P.events (leader tracking, the monitor) and its inboxes.
#   bot       publish reads and writes only; subscribe to P.heartbeat, P.events and its
#             inboxes. Nothing that changes the cluster.
#   observer  subscribe to P.> (instaface-node tap, nats sub); publish nothing but the
#             micro-service discovery requests ($SRV.PING, $SRV.INFO, $SRV.STATS, which
#             change nothing), whose answers come to its inboxes.
# With several shards (SHARDS) every leader-group subject above (all but P.events and
# P.control.unplug) also comes as P.shard.<k>.…, allowed alike.
# Every publish or subscription not listed is refused by the server
# (-ERR 'Permissions Violation …'). Replies go out through allow_responses: a role that
# answers requests may publish to the reply subject of a request it received (once,
# within two minutes), and to no other inbox.
set -eu

ROLES="node gateway bot observer"

die() {
  echo "nats-auth.sh: $*" >&2
  exit 2
}

# inbox ROLE: the role's inbox prefix.
inbox() { printf '_INBOX_%s' "$1"; }

# password_var ROLE: the name of the role's password variable.
password_var() { printf 'NATS_%s_PASSWORD' "$(printf '%s' "$1" | tr '[:lower:]' '[:upper:]')"; }

# check_password NAME VALUE
check_password() {
  [ -n "$2" ] || die "$1 is not set"
  case $2 in *[!A-Za-z0-9._~-]*) die "$1 may hold only A-Z a-z 0-9 . _ ~ - (it goes into nats:// URLs)" ;; esac
  [ "${#2}" -ge 12 ] || die "$1 is too short (at least 12 characters)"
}

# list ITEM…: the items as a quoted, comma-separated list.
list() {
  sep=''
  for item in "$@"; do
    printf '%s"%s"' "$sep" "$item"
    sep=', '
  done
}

# user ROLE PUBLISH SUBSCRIBE RESPONSES: one entry of the users list; PUBLISH and
# SUBSCRIBE are lists made by `list`; RESPONSES `responses` lets it answer requests.
user() {
  eval "pw=\${$(password_var "$1"):-}"
  check_password "$(password_var "$1")" "$pw"
  printf '    {\n      user: "%s"\n      password: "%s"\n      permissions: {\n' "$1" "$pw"
  printf '        publish: { allow: [%s] }\n' "$2"
  printf '        subscribe: { allow: [%s] }\n' "$3"
  if [ "$4" = responses ]; then
    printf '        allow_responses: true\n'
  fi
  printf '      }\n    }\n'
}

config() {
  p=${INSTAFACE_PREFIX:-instaface}
  case $p in
    '' | .* | *. | *..* | *[!A-Za-z0-9_.-]*) die "INSTAFACE_PREFIX ($p) must be dot-separated tokens of [A-Za-z0-9_-]" ;;
  esac
  cat <<EOF
# The NATS users of the Instaface stack on prefix "$p", one per role, written by
# compose/nats-auth.sh (edit that, not this file). It holds passwords: keep it private.
authorization {
  users = [
EOF
  # A leader group's subjects are P.X with one shard, P.shard.<k>.X for shard k of several
  # (SHARDS): each group-level entry is allowed in both forms ($s is P.shard.*).
  s="$p.shard.*"
  user node \
    "$(list "$p.heartbeat" "$p.vote" "$p.invalidate" "$p.events" "$p.node.*.>" \
      "$s.heartbeat" "$s.vote" "$s.invalidate" "$s.node.*.>")" \
    "$(list "$p.heartbeat" "$p.vote" "$p.invalidate" "$p.events" "$p.control.unplug" "$p.graph.read readers" "$p.graph.reads readers" "$p.node.*.>" \
      "$s.heartbeat" "$s.vote" "$s.invalidate" "$s.graph.read readers" "$s.graph.reads readers" "$s.node.*.>" \
      "\$SRV.>" "$(inbox node).>")" \
    responses
  user gateway \
    "$(list "$p.graph.read" "$p.graph.reads" "$p.node.*.read" "$p.node.*.write" "$p.node.*.status" "$p.control.unplug" \
      "$s.graph.read" "$s.graph.reads" "$s.node.*.read" "$s.node.*.write" "$s.node.*.status")" \
    "$(list "$p.heartbeat" "$p.events" "$s.heartbeat" "$(inbox gateway).>")" \
    none
  user bot \
    "$(list "$p.graph.read" "$p.graph.reads" "$p.node.*.read" "$p.node.*.write" \
      "$s.graph.read" "$s.graph.reads" "$s.node.*.read" "$s.node.*.write")" \
    "$(list "$p.heartbeat" "$p.events" "$s.heartbeat" "$(inbox bot).>")" \
    none
  user observer \
    "$(list "\$SRV.PING" "\$SRV.PING.>" "\$SRV.INFO" "\$SRV.INFO.>" "\$SRV.STATS" "\$SRV.STATS.>")" \
    "$(list "$p.>" "$(inbox observer).>")" \
    none
  printf '  ]\n}\n'
}

# write_private FILE: standard input to FILE, readable by its owner only.
write_private() {
  (
    umask 077
    tmp="$1.tmp.$$"
    cat >"$tmp"
    chmod 600 "$tmp"
    mv -f "$tmp" "$1"
  )
}

random_password() {
  # 24 random bytes as 48 hex digits: URL-safe, no tool beyond od and tr needed.
  od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
}

secrets() {
  file=$1
  existed=1
  if [ ! -e "$file" ]; then
    existed=0
    mkdir -p "$(dirname "$file")"
    {
      echo "# The local launcher's NATS passwords, one per role (compose/nats-auth.sh secrets)."
      echo "# Delete this file to have new ones made at the next start."
    } | write_private "$file"
  fi
  [ -f "$file" ] && [ -r "$file" ] || die "$file is not a readable file"
  added=''
  for role in $ROLES; do
    var=$(password_var "$role")
    if ! grep -q "^$var=" "$file"; then
      { cat "$file"; echo "$var=$role-$(random_password)"; } | write_private "$file"
      added="$added $role"
    fi
  done
  chmod 600 "$file"
  # Check what is there (a hand-edited file, say).
  for role in $ROLES; do
    var=$(password_var "$role")
    check_password "$var in $file" "$(sed -n "s/^$var=//p" "$file" | tail -n 1)"
  done
  if [ "$existed" = 1 ] && [ -n "$added" ]; then
    echo "nats-auth.sh: added to $file a password for:$added" >&2
  fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  config)
    if [ $# -ge 1 ]; then
      out=$(config)
      printf '%s\n' "$out" | write_private "$1"
    else
      config
    fi
    ;;
  serve)
    conf=${NATS_AUTH_CONF:-/tmp/instaface-nats-auth.conf}
    out=$(config)
    printf '%s\n' "$out" | write_private "$conf"
    exec nats-server -c "$conf" "$@"
    ;;
  secrets)
    [ $# -eq 1 ] || die "usage: nats-auth.sh secrets FILE"
    secrets "$1"
    ;;
  roles)
    for role in $ROLES; do echo "$role $(inbox "$role")"; done
    ;;
  *)
    die "usage: nats-auth.sh config [FILE] | serve [NATS-SERVER-ARG…] | secrets FILE | roles"
    ;;
esac
