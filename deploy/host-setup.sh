#!/usr/bin/env bash
# virtfleet host setup (Debian 12). Idempotent; a no-op run takes well under a second.
#
#   deploy/host-setup.sh               packages, libvirt daemons, /dev/kvm, state dirs
#   deploy/host-setup.sh --with-redis  ... and a local redis-server on 127.0.0.1:6379, run as user
#                                      redis with a password (generated once into
#                                      /etc/virtfleet/redis.password; clients: REDIS_PASSWORD_FILE)
#
# Never starts libvirt's NAT network `default` (and turns its autostart off).
set -euo pipefail

# systemd: its units in deploy/systemd are checked with systemd-analyze (libvirt pulls it in anyway);
# openssl: the tests make a CA and certificates for Redis over TLS.
# mmdebstrap, e2fsprogs: build-cloud-guest.sh builds the Debian 12 cloud guest; xorriso: cloud-init
# seed ISOs (xorrisofs). chromium: the dashboard's browser test (playwright-core drives it).
PACKAGES=(qemu-utils qemu-system-x86 libvirt-daemon-system virtinst redis-server
          busybox-static linux-image-cloud-amd64 cpio systemd openssl
          mmdebstrap e2fsprogs xorriso chromium)
STATE_DIR=${VIRTFLEET_STATE_DIR:-/var/lib/virtfleet}
LIBVIRT_URI=qemu:///system
WAIT_SECS=30
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REDIS_CONF=$SCRIPT_DIR/redis/virtfleet.conf
CONF_DIR=${VIRTFLEET_CONF_DIR:-/etc/virtfleet}
# Another port and folders (VIRTFLEET_REDIS_PORT, VIRTFLEET_STATE_DIR, VIRTFLEET_CONF_DIR): for tests.
REDIS_PORT=${VIRTFLEET_REDIS_PORT:-6379}
# Generated once by --with-redis: the password clients read (root only), and the server's config.
REDIS_PASSWORD_FILE=$CONF_DIR/redis.password
REDIS_AUTH_CONF=$CONF_DIR/redis.conf

WITH_REDIS=0
for arg in "$@"; do
  case $arg in
    --with-redis) WITH_REDIS=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "host-setup: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log()  { printf 'host-setup: %s\n' "$*"; }
warn() { printf 'host-setup: WARNING: %s\n' "$*" >&2; }
die()  { printf 'host-setup: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

HAS_SYSTEMD=0
[ -d /run/systemd/system ] && HAS_SYSTEMD=1

# --- 1. packages -------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "packages: all present"
else
  log "packages: installing ${missing[*]}"
  # Keep apt's maintainer scripts from starting services (notably redis-server on
  # :6379, which would collide with the test suites' own servers). We start what
  # we need ourselves below. Only if the admin has no policy-rc.d of their own.
  POLICY=/usr/sbin/policy-rc.d
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, written by virtfleet host-setup.sh\nexit 101\n' >"$POLICY"
    chmod 0755 "$POLICY"
    trap 'rm -f "$POLICY"' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ -e "$POLICY" ] && grep -q 'virtfleet host-setup' "$POLICY"; then
    rm -f "$POLICY"; trap - EXIT
  fi
fi

# --- 2. /dev/kvm (what udev's 60-qemu/50-udev rules would do) -----------------
# Only ever widens access: sets group kvm and adds g+rw, never removes bits, so a
# 0666 /dev/kvm stays 0666.
KVM_CHANGED=0
if [ -c /dev/kvm ]; then
  if getent group kvm >/dev/null; then
    if [ "$(stat -c %G /dev/kvm)" != kvm ]; then chgrp kvm /dev/kvm; KVM_CHANGED=1; fi
    mode=$(stat -c %a /dev/kvm)
    if (( (8#$mode & 8#060) != 8#060 )); then chmod g+rw /dev/kvm; KVM_CHANGED=1; fi
    if id libvirt-qemu >/dev/null 2>&1 && ! id -nG libvirt-qemu | tr ' ' '\n' | grep -qx kvm; then
      usermod -a -G kvm libvirt-qemu; KVM_CHANGED=1
    fi
    log "/dev/kvm: $(stat -c '%U:%G %a' /dev/kvm)$([ $KVM_CHANGED = 1 ] && echo ' (fixed)')"
  else
    warn "/dev/kvm present but group kvm missing; left alone"
  fi
else
  log "/dev/kvm: absent (VMs need --virt-type qemu, i.e. TCG emulation)"
fi

# --- 3. keep the NAT network `default` from autostarting ----------------------
# Remove the autostart link *before* libvirtd starts, otherwise the daemon brings
# up virbr0/192.168.122.0/24 on startup. (Same effect as net-autostart --disable.)
NET_AUTOSTART_LINK=/etc/libvirt/qemu/networks/autostart/default.xml
if [ -e "$NET_AUTOSTART_LINK" ] || [ -L "$NET_AUTOSTART_LINK" ]; then
  rm -f "$NET_AUTOSTART_LINK"
  log "network default: autostart link removed"
fi

# --- 4. libvirt daemons -------------------------------------------------------
# pgrep -x also matches zombies (seen right after killing a daemon whose parent is
# a non-reaping PID 1), so only count processes that are not in state Z.
alive_pids() {
  local pid st
  for pid in $(pgrep -x "$1" || true); do
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ] && echo "$pid"
  done
  return 0
}
alive() { [ -n "$(alive_pids "$1")" ]; }
virsh_ok() { timeout 5 virsh -q -c "$LIBVIRT_URI" version >/dev/null 2>&1; }

if [ $HAS_SYSTEMD = 1 ]; then
  if [ $KVM_CHANGED = 1 ] && systemctl is-active -q libvirtd.service; then
    systemctl restart libvirtd.service  # qemu user's groups are read at daemon start
  fi
  systemctl enable --now virtlogd.socket libvirtd.socket >/dev/null 2>&1 || true
  systemctl enable --now libvirtd.service
  log "libvirtd: enabled via systemd"
else
  if [ $KVM_CHANGED = 1 ] && alive libvirtd; then
    log "libvirtd: restarting to pick up kvm group change (running VMs are unaffected)"
    kill $(alive_pids libvirtd) || true
    for _ in $(seq 100); do alive libvirtd || break; sleep 0.1; done
  fi
  if ! alive virtlogd; then virtlogd -d; log "virtlogd: started"; fi
  if ! alive libvirtd; then libvirtd -d; log "libvirtd: started"; fi
fi

deadline=$((SECONDS + WAIT_SECS))
until virsh_ok; do
  (( SECONDS < deadline )) || die "libvirtd not answering on $LIBVIRT_URI after ${WAIT_SECS}s"
  sleep 0.3
done
log "libvirtd: answering ($(virsh -c "$LIBVIRT_URI" version 2>/dev/null | sed -n 's/^Running hypervisor: //p'))"

# Belt and braces now that libvirtd is up (never net-start).
if virsh -c "$LIBVIRT_URI" net-info default >/dev/null 2>&1; then
  info=$(virsh -c "$LIBVIRT_URI" net-info default)
  if grep -Eq '^Autostart:[[:space:]]+yes' <<<"$info"; then
    virsh -q -c "$LIBVIRT_URI" net-autostart default --disable >/dev/null
    log "network default: autostart disabled"
  fi
  if grep -Eq '^Active:[[:space:]]+yes' <<<"$info"; then
    # Stop it, unless a running domain is plugged into it (don't cut VMs off).
    users=""
    for d in $(virsh -c "$LIBVIRT_URI" list --name); do
      if virsh -c "$LIBVIRT_URI" domiflist "$d" 2>/dev/null | awk 'NR>2 {print $3}' | grep -qx default; then
        users+=" $d"
      fi
    done
    if [ -z "$users" ]; then
      virsh -q -c "$LIBVIRT_URI" net-destroy default >/dev/null
      log "network default: was active, stopped"
    else
      warn "network default is active and used by:$users; left running"
    fi
  fi
fi

# --- 5. state dirs --------------------------------------------------------------
install -d -m 0755 "$STATE_DIR" "$STATE_DIR/vms" "$STATE_DIR/images"
log "dirs: $STATE_DIR/{vms,images} ready"

# --- 6. optional redis ----------------------------------------------------------
# redis-server runs as the `redis` user (Debian's package makes it), its data private to it, with a
# password generated once: clients read it from $REDIS_PASSWORD_FILE (root only); the server from
# $REDIS_AUTH_CONF (root:redis 0640). Neither is ever on a command line (`ps` shows those).
if [ $WITH_REDIS = 1 ]; then
  [ -r "$REDIS_CONF" ] || die "missing $REDIS_CONF"
  REDIS_DIR=$STATE_DIR/redis
  REDIS_PIDFILE=$REDIS_DIR/redis.pid
  # redis-cli with password $1 ("" for none), through the environment (never argv).
  rcli() {
    if [ -n "$1" ]; then REDISCLI_AUTH=$1 timeout 3 redis-cli --no-auth-warning -h 127.0.0.1 -p "$REDIS_PORT" "${@:2}" 2>/dev/null
    else env -u REDISCLI_AUTH timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "${@:2}" 2>/dev/null; fi
  }

  if ! id redis >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$REDIS_DIR" --no-create-home --shell /usr/sbin/nologin redis
    log "redis: user redis created"
  fi
  install -d -m 0755 "$CONF_DIR"
  if [ ! -s "$REDIS_PASSWORD_FILE" ]; then
    (umask 077; od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$REDIS_PASSWORD_FILE")
    log "redis: password generated into $REDIS_PASSWORD_FILE"
  fi
  chown root:root "$REDIS_PASSWORD_FILE"; chmod 0600 "$REDIS_PASSWORD_FILE"
  password=$(cat "$REDIS_PASSWORD_FILE")
  # The server's configuration: the recommended settings plus the password (readable by redis only).
  install -m 0644 "$REDIS_CONF" "$CONF_DIR/redis-virtfleet.conf"
  (umask 027
   printf '# written by virtfleet host-setup.sh: do not edit (the password is %s)\ninclude %s\nrequirepass %s\n' \
     "$REDIS_PASSWORD_FILE" "$CONF_DIR/redis-virtfleet.conf" "$password" >"$REDIS_AUTH_CONF.new")
  chown root:redis "$REDIS_AUTH_CONF.new"; chmod 0640 "$REDIS_AUTH_CONF.new"; mv -f "$REDIS_AUTH_CONF.new" "$REDIS_AUTH_CONF"

  # A live (not zombie) process of that pid.
  pid_alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true); [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]; }
  ours_pid() { [ -f "$REDIS_PIDFILE" ] && pid_alive "$(cat "$REDIS_PIDFILE")" && cat "$REDIS_PIDFILE"; }
  stop_ours() {  # SHUTDOWN writes the AOF/RDB; then wait for the process to go
    local pid; pid=$(ours_pid) || return 0
    rcli "$1" shutdown >/dev/null || kill -TERM "$pid" 2>/dev/null || true
    # Redis may refuse a shutdown and not try again (e.g. "Writing initial AOF, can't exit"):
    # SIGTERM again every 2 s.
    for i in $(seq 150); do pid_alive "$pid" || break; ((i % 10)) || kill -TERM "$pid" 2>/dev/null || true; sleep 0.2; done
    ! pid_alive "$pid" || die "redis (pid $pid) did not stop"
  }

  start=1
  if [ "$(rcli "" ping)" = PONG ]; then
    # Answers without a password: an earlier set-up's Redis (run as root), or somebody else's.
    pid=$(ours_pid) || die "an unauthenticated Redis that host-setup did not start answers on 127.0.0.1:$REDIS_PORT; stop it (or point REDIS_URL elsewhere) and run again"
    warn "redis: the Redis on 127.0.0.1:$REDIS_PORT (pid $pid, user $(ps -o user= -p "$pid")) has no password: restarting it as user redis with one (its data is kept)"
    stop_ours ""
  elif [ "$(rcli "$password" ping)" = PONG ]; then
    pid=$(ours_pid) || true
    if [ -n "$pid" ] && [ "$(ps -o user= -p "$pid" | tr -d ' ')" != redis ]; then
      warn "redis: running as $(ps -o user= -p "$pid"), restarting it as user redis"
      stop_ours "$password"
    else
      start=0
      log "redis: already answering on 127.0.0.1:$REDIS_PORT (with the password of $REDIS_PASSWORD_FILE)"
    fi
  elif timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>&1 | grep -q 'NOAUTH\|WRONGPASS'; then
    die "a Redis answers on 127.0.0.1:$REDIS_PORT but refuses the password of $REDIS_PASSWORD_FILE; stop it or put its password there"
  fi

  if [ $start = 1 ]; then
    # Data and log private to redis (an earlier root-run Redis left root's files here: hand them over).
    install -d -m 0750 -o redis -g redis "$REDIS_DIR"
    chown -R redis:redis "$REDIS_DIR"; chmod 0750 "$REDIS_DIR"
    setpriv --reuid=redis --regid=redis --init-groups --inh-caps=-all \
      redis-server "$REDIS_AUTH_CONF" --port "$REDIS_PORT" --daemonize yes --dir "$REDIS_DIR" \
      --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_DIR/redis.log" \
      || die "redis-server did not start as user redis (see $REDIS_DIR/redis.log; it must be able to read $REDIS_AUTH_CONF)"
    deadline=$((SECONDS + WAIT_SECS))
    until [ "$(rcli "$password" ping)" = PONG ]; do
      (( SECONDS < deadline )) || die "redis not answering after ${WAIT_SECS}s (see $REDIS_DIR/redis.log)"
      sleep 0.2
    done
    log "redis: started on 127.0.0.1:$REDIS_PORT as user $(ps -o user= -p "$(cat "$REDIS_PIDFILE")" | tr -d ' '), with a password (appendonly $(rcli "$password" config get appendonly | tail -1), maxmemory-policy $(rcli "$password" config get maxmemory-policy | tail -1))"
  fi
  log "redis: clients use REDIS_PASSWORD_FILE=$REDIS_PASSWORD_FILE"
fi

log "done"
