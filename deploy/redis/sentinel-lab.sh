#!/usr/bin/env bash
# virtfleet's Redis with Sentinel, for a try-out on one machine: a master, a replica and three sentinels
# on loopback ports, with the ACL users of deploy/redis/users.acl. No root needed; everything (data,
# logs, generated passwords, rendered configs) lives under the lab folder.
#
#   deploy/redis/sentinel-lab.sh            start whatever is not running; print the env vars to use
#   deploy/redis/sentinel-lab.sh --status   each process: running or not, its role; the sentinels' master
#   deploy/redis/sentinel-lab.sh --stop     stop the set (SIGTERM: Redis writes its AOF); data is kept
#   deploy/redis/sentinel-lab.sh --render   only generate the passwords and render the configs (for
#                                           deploy/compose.yaml: --render --dir deploy/redis-lab --port 6379)
# Options:
#   --dir DIR          the lab folder (default $VIRTFLEET_LAB_DIR, else ~/.local/state/virtfleet/sentinel-lab)
#   --port N           first of five ports: master N, replica N+1, sentinels N+2..N+4 (default 6390)
#   --replicas R       R replicas (1-3, default 1); replica k > 1 is 'replica-k' on port N+3+k. With one
#                      replica, min-replicas-to-write 1 refuses writes after a failover until the old
#                      master is back (run this script again to start it); with two, writes go on
#   --prefix P         the fleet's key prefix the ACL users get (VIRTFLEET_PREFIX; default virtfleet)
#   --master-host H    the master's address the sentinels are told (default 127.0.0.1)
#   --tls              TLS only, everywhere (clients, replication, sentinels): a CA and a certificate for
#                      localhost/127.0.0.1 are made with openssl into DIR/tls (a lab made with --tls stays so)
# Passwords are generated once into DIR/secrets/<user>.password (0600) and reused; rm -r DIR resets all.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
DIR=${VIRTFLEET_LAB_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/virtfleet/sentinel-lab}
BASE_PORT=6390
PREFIX=${VIRTFLEET_PREFIX:-virtfleet}
MASTER_HOST=127.0.0.1
NAME=virtfleet
REPLICAS=1
TLS=0
ACTION=start
WAIT_SECS=30
# The lab fails over quickly; deploy/redis/sentinel.conf says what to use for real.
DOWN_AFTER_MS=2000
FAILOVER_TIMEOUT_MS=10000
USERS=(virtfleet-worker virtfleet-controller virtfleet-api virtfleet-cli virtfleet-replica virtfleet-sentinel virtfleet-client virtfleet-admin)

die() { printf 'sentinel-lab: ERROR: %s\n' "$*" >&2; exit 1; }
log() { printf 'sentinel-lab: %s\n' "$*" >&2; }

while [ $# -gt 0 ]; do
  case $1 in
    --stop) ACTION=stop ;;
    --status) ACTION=status ;;
    --render) ACTION=render ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a folder"; DIR=$2; shift ;;
    --port) [ $# -ge 2 ] || die "--port needs a number"; BASE_PORT=$2; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; PREFIX=$2; shift ;;
    --tls) TLS=1 ;;
    --replicas) [ $# -ge 2 ] || die "--replicas needs a number"; REPLICAS=$2; shift ;;
    --master-host) [ $# -ge 2 ] || die "--master-host needs a host"; MASTER_HOST=$2; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
[[ $BASE_PORT =~ ^[0-9]+$ ]] && (( BASE_PORT >= 1 && BASE_PORT <= 65531 )) || die "--port: not a port number (1-65531): $BASE_PORT"
[[ $REPLICAS =~ ^[1-3]$ ]] || die "--replicas: 1, 2 or 3: $REPLICAS"
[[ $PREFIX =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "--prefix: not a key prefix (letters, digits, _ . -): $PREFIX"
[[ $MASTER_HOST =~ ^[A-Za-z0-9][A-Za-z0-9.:-]*$ ]] || die "--master-host: not a host name or address: $MASTER_HOST"
case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac

MASTER_PORT=$BASE_PORT
REPLICA_PORT=$((BASE_PORT + 1))
SENTINEL_PORTS=($((BASE_PORT + 2)) $((BASE_PORT + 3)) $((BASE_PORT + 4)))
SECRETS=$DIR/secrets
TLS_DIR=$DIR/tls
[ -s "$TLS_DIR/ca.crt" ] && TLS=1

password_file() { printf '%s/%s.password' "$SECRETS" "$1"; }
password() { cat "$(password_file "$1")"; }
sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# redis-cli as ACL user $1 on port $2 (the password through the environment, never argv).
rcli() {
  local tls=()
  [ "$TLS" = 1 ] && tls=(--tls --cacert "$TLS_DIR/ca.crt")
  REDISCLI_AUTH=$(password "$1") timeout 3 redis-cli --no-auth-warning "${tls[@]}" --user "$1" -h 127.0.0.1 -p "$2" "${@:3}" 2>/dev/null
}
# LISTEN: the server options to listen on port $1: TLS only (with --tls), else plain.
set_listen() {
  if [ "$TLS" = 1 ]; then
    LISTEN=(--port 0 --tls-port "$1" --tls-cert-file "$TLS_DIR/server.crt" --tls-key-file "$TLS_DIR/server.key"
            --tls-ca-cert-file "$TLS_DIR/ca.crt" --tls-auth-clients optional --tls-replication yes)
  else
    LISTEN=(--port "$1")
  fi
}
# A CA and one server certificate (EC P-256, a year) for every process of the lab.
make_tls() {
  [ "$TLS" = 1 ] || return 0
  [ -s "$TLS_DIR/server.crt" ] && return 0
  command -v openssl >/dev/null || die "--tls needs openssl"
  install -d -m 0700 "$TLS_DIR"
  (umask 077
   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TLS_DIR/ca.key" \
     -out "$TLS_DIR/ca.crt" -subj /CN=virtfleet-lab-ca -days 365 2>/dev/null
   openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TLS_DIR/server.key" \
     -out "$TLS_DIR/server.csr" -subj /CN=localhost 2>/dev/null
   printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$TLS_DIR/server.ext"
   openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" -CAcreateserial \
     -out "$TLS_DIR/server.crt" -days 365 -extfile "$TLS_DIR/server.ext" 2>/dev/null) || die "openssl failed"
  chmod 0644 "$TLS_DIR/ca.crt"
}
# A live (not zombie) process of the pid in file $1.
running_pid() {
  local pid st
  pid=$(cat "$1" 2>/dev/null) || return 1
  st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ] && echo "$pid"
}
# name, port and pidfile of each process
procs() {
  echo "master $MASTER_PORT $DIR/master/redis.pid"
  echo "replica $REPLICA_PORT $DIR/replica/redis.pid"
  local i
  for i in 0 1 2; do echo "sentinel-$((i + 1)) ${SENTINEL_PORTS[$i]} $DIR/sentinel-$((i + 1))/redis.pid"; done
  # (and any started earlier with a bigger --replicas: --stop and --status see them too)
  for i in 2 3; do
    if ((i <= REPLICAS)) || [ -d "$DIR/replica-$i" ]; then echo "replica-$i $((BASE_PORT + 3 + i)) $DIR/replica-$i/redis.pid"; fi
  done
}

# --- passwords and rendered files ---------------------------------------------------------------------
render() {
  install -d -m 0700 "$DIR" "$SECRETS" "$DIR/env"
  local u
  for u in "${USERS[@]}"; do
    if [ ! -s "$(password_file "$u")" ]; then
      (umask 077; od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$(password_file "$u")")
    fi
  done
  local subst=(
    -e "s|@PREFIX@|$PREFIX|g"
    -e "s|@WORKER_PASSWORD_HASH@|$(sha256 "$(password virtfleet-worker)")|g"
    -e "s|@CONTROLLER_PASSWORD_HASH@|$(sha256 "$(password virtfleet-controller)")|g"
    -e "s|@API_PASSWORD_HASH@|$(sha256 "$(password virtfleet-api)")|g"
    -e "s|@CLI_PASSWORD_HASH@|$(sha256 "$(password virtfleet-cli)")|g"
    -e "s|@REPLICA_PASSWORD_HASH@|$(sha256 "$(password virtfleet-replica)")|g"
    -e "s|@SENTINEL_PASSWORD_HASH@|$(sha256 "$(password virtfleet-sentinel)")|g"
    -e "s|@CLIENT_PASSWORD_HASH@|$(sha256 "$(password virtfleet-client)")|g"
    -e "s|@ADMIN_PASSWORD_HASH@|$(sha256 "$(password virtfleet-admin)")|g"
    -e "s|@SENTINEL_PASSWORD@|$(password virtfleet-sentinel)|g"
    -e "s|@NAME@|$NAME|g"
    -e "s|@MASTER_HOST@|$MASTER_HOST|g"
    -e "s|@MASTER_PORT@|$MASTER_PORT|g"
    -e "s|@DOWN_AFTER_MS@|$DOWN_AFTER_MS|g"
    -e "s|@FAILOVER_TIMEOUT_MS@|$FAILOVER_TIMEOUT_MS|g"
  )
  (umask 077
   # Redis ACL files take no comments.
   grep -v -e '^#' -e '^[[:space:]]*$' "$SCRIPT_DIR/users.acl" | sed "${subst[@]}" >"$DIR/users.acl"
   printf '# written by sentinel-lab.sh: how a replica (and the master, once demoted) logs in to its master\nmasteruser virtfleet-replica\nmasterauth %s\n' \
     "$(password virtfleet-replica)" >"$DIR/replication.conf")
  local i
  for i in 1 2 3; do
    install -d -m 0700 "$DIR/sentinel-$i"
    # Rendered once: from then on the sentinel owns its file (it records the current master there).
    if [ ! -s "$DIR/sentinel-$i/sentinel.conf" ]; then
      (umask 077; sed "${subst[@]}" -e "s|@PORT@|${SENTINEL_PORTS[$((i - 1))]}|g" "$SCRIPT_DIR/sentinel.conf" \
        >"$DIR/sentinel-$i/sentinel.conf")
    fi
  done
  local sentinels
  sentinels=$(printf '127.0.0.1:%s,' "${SENTINEL_PORTS[@]}")
  for u in worker controller api cli; do
    (umask 077
     {
       echo "# virtfleet-$u's Redis: the Sentinel set of $DIR"
       echo "REDIS_SENTINELS=${sentinels%,}"
       echo "REDIS_SENTINEL_NAME=$NAME"
       echo "REDIS_SENTINEL_USERNAME=virtfleet-client"
       echo "REDIS_SENTINEL_PASSWORD_FILE=$(password_file virtfleet-client)"
       echo "REDIS_USERNAME=virtfleet-$u"
       echo "REDIS_PASSWORD_FILE=$(password_file "virtfleet-$u")"
       echo "REDIS_MIN_REPLICAS=1"
       echo "VIRTFLEET_PREFIX=$PREFIX"
       if [ "$TLS" = 1 ]; then
         echo "REDIS_SENTINEL_TLS=1"
         echo "REDIS_TLS_CA_FILE=$TLS_DIR/ca.crt"
         echo "# The master itself (and without Sentinel support, no failover): TLS, the name in the certificate"
         echo "REDIS_URL=rediss://localhost:$MASTER_PORT"
       else
         echo "# Without Sentinel support (no failover): the master itself"
         echo "# REDIS_URL=redis://127.0.0.1:$MASTER_PORT"
       fi
     } >"$DIR/env/$u.env")
  done
}

# --- start --------------------------------------------------------------------------------------------
# The master's port as the sentinels know it now (after a failover, not MASTER_PORT), else MASTER_PORT.
current_master_port() {
  local p addr
  for p in "${SENTINEL_PORTS[@]}"; do
    addr=$(rcli virtfleet-client "$p" sentinel get-master-addr-by-name "$NAME" | sed -n 2p) || continue
    [ -n "$addr" ] && { echo "$addr"; return; }
  done
  echo "$MASTER_PORT"
}

start_redis() { # role conf port
  local role=$1 conf=$2 port=$3 extra=() master
  # A replica follows the current master; so does a master the sentinels have replaced (it would
  # otherwise come back as a second master, with stale data, until the sentinels demote it).
  master=$(current_master_port)
  [ "$master" != "$port" ] && extra=(--replicaof 127.0.0.1 "$master")
  install -d -m 0700 "$DIR/$role"
  # The sentinels CONFIG REWRITE the file Redis was started with: a copy of its own, made once.
  [ -s "$DIR/$role/redis.conf" ] || install -m 0600 "$conf" "$DIR/$role/redis.conf"
  set_listen "$port"
  redis-server "$DIR/$role/redis.conf" "${LISTEN[@]}" --dir "$DIR/$role" --aclfile "$DIR/users.acl" \
    --include "$DIR/replication.conf" "${extra[@]}" \
    --daemonize yes --pidfile "$DIR/$role/redis.pid" --logfile "$DIR/$role/redis.log" \
    || die "the $role did not start (see $DIR/$role/redis.log)"
}

until_true() { # what, command…
  local what=$1 deadline=$((SECONDS + WAIT_SECS))
  shift
  until "$@"; do
    if (( SECONDS >= deadline )); then
      tail -n 5 "$DIR"/*/redis.log >&2 || true
      die "$what: not after ${WAIT_SECS}s (logs under $DIR)"
    fi
    sleep 0.2
  done
}
# ROLE, not PING: a replica still syncing answers PING with MASTERDOWN (replica-serve-stale-data no).
answers() { [ -n "$(rcli virtfleet-sentinel "$1" role | head -1)" ]; }
replica_linked() { rcli virtfleet-sentinel "$REPLICA_PORT" info replication | grep -q '^master_link_status:up'; }
# The sentinel on port $1 knows the master, its replicas and the two other sentinels.
sentinel_ready() {
  local info
  info=$(rcli virtfleet-client "$1" sentinel master "$NAME") || return 1
  [ "$(sed -n '/^num-other-sentinels$/{n;p}' <<<"$info")" = 2 ] && [ "$(sed -n '/^num-slaves$/{n;p}' <<<"$info")" -ge "$REPLICAS" ]
}

start() {
  command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install redis-server)"
  render
  make_tls
  local name port pidfile started=0
  while read -r name port pidfile; do
    if running_pid "$pidfile" >/dev/null; then continue; fi
    case $name in
      master) start_redis master "$SCRIPT_DIR/master.conf" "$port" ;;
      replica*) start_redis "$name" "$SCRIPT_DIR/replica.conf" "$port" ;;
      sentinel-*)
        set_listen "$port"
        redis-server "$DIR/$name/sentinel.conf" --sentinel "${LISTEN[@]}" --dir "$DIR/$name" --daemonize yes \
          --pidfile "$pidfile" --logfile "$DIR/$name/redis.log" || die "$name did not start (see $DIR/$name/redis.log)"
        ;;
    esac
    started=$((started + 1))
    if [[ $name = sentinel-* ]]; then
      until_true "$name answering on $port" eval '[ "$(rcli virtfleet-client '"$port"' ping)" = PONG ]'
    else
      until_true "the $name answering on $port" answers "$port"
    fi
  done < <(procs)
  # A restarted old master is turned into a replica by the sentinels; only a fresh set is waited for.
  if running_pid "$DIR/replica/redis.pid" >/dev/null && [ "$(rcli virtfleet-sentinel "$REPLICA_PORT" role | head -1)" = slave ]; then
    until_true "the replica's link to the master" replica_linked
  fi
  local p
  for p in "${SENTINEL_PORTS[@]}"; do until_true "the sentinel on $p to see the set" sentinel_ready "$p"; done
  log "running ($started started) under $DIR"
  print_env
}

print_env() {
  local addr
  addr=$(rcli virtfleet-client "${SENTINEL_PORTS[0]}" sentinel get-master-addr-by-name "$NAME" | paste -sd: -)
  cat <<EOF
# virtfleet on the lab's Redis (master now at $addr). Each component its own user:
#   worker: set -a; . $DIR/env/worker.env; set +a
#   a standalone virtfleet-controller: $DIR/env/controller.env
#   API:    set -a; . $DIR/env/api.env; set +a
#   CLI:    set -a; . $DIR/env/cli.env; set +a
# which set (the API's, for example):
EOF
  grep -v '^#' "$DIR/env/api.env"
  if [ "$TLS" = 1 ]; then
    echo "# redis-cli: --tls --cacert $TLS_DIR/ca.crt --user <user> -h 127.0.0.1 -p $MASTER_PORT"
  else
    echo "# Direct to the master (no failover), e.g. for redis-cli: REDIS_URL=redis://127.0.0.1:$MASTER_PORT"
  fi
}

# --- stop, status -------------------------------------------------------------------------------------
stop() {
  local name port pidfile pid
  # Sentinels first: stopping the master under running sentinels would start a failover.
  while read -r name port pidfile; do
    pid=$(running_pid "$pidfile") || { log "$name: not running"; continue; }
    kill -TERM "$pid"
    # Redis refuses a SIGTERM now and then and does not try again: a replica that has just resynced
    # logs "Writing initial AOF, can't exit" until its first AOF is written. So the signal is sent
    # again every 2 s until the process is gone.
    local deadline=$((SECONDS + WAIT_SECS)) resend=$((SECONDS + 2))
    while running_pid "$pidfile" >/dev/null; do
      if (( SECONDS >= deadline )); then
        tail -n 5 "$(dirname "$pidfile")/redis.log" >&2 || true
        die "$name (pid $pid) did not stop within ${WAIT_SECS}s"
      fi
      if (( SECONDS >= resend )); then
        kill -TERM "$pid" 2>/dev/null || true
        resend=$((SECONDS + 2))
      fi
      sleep 0.1
    done
    log "$name: stopped (pid $pid)"
  done < <(procs | tac)
}

status() {
  local name port pidfile pid down=0
  while read -r name port pidfile; do
    if pid=$(running_pid "$pidfile"); then
      if [[ $name = sentinel-* ]]; then
        printf '%-11s 127.0.0.1:%s  pid %-7s master at %s\n' "$name" "$port" "$pid" \
          "$(rcli virtfleet-client "$port" sentinel get-master-addr-by-name "$NAME" | paste -sd: -)"
      else
        printf '%-11s 127.0.0.1:%s  pid %-7s role %s\n' "$name" "$port" "$pid" \
          "$(rcli virtfleet-sentinel "$port" role | head -1)"
      fi
    else
      printf '%-11s 127.0.0.1:%s  not running\n' "$name" "$port"; down=1
    fi
  done < <(procs)
  return $down
}

case $ACTION in
  start) start ;;
  stop) stop ;;
  status) status ;;
  render) render; log "rendered under $DIR (passwords in $SECRETS)" ;;
esac
