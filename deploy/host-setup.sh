#!/usr/bin/env bash
# virtfleet host setup (Debian 12). Idempotent; a no-op run takes well under a second.
#
#   deploy/host-setup.sh               packages, libvirt daemons, /dev/kvm, state dirs
#   deploy/host-setup.sh --with-redis  ... and a local redis-server on 127.0.0.1:6379
#
# Never starts libvirt's NAT network `default` (and turns its autostart off).
set -euo pipefail

# systemd: its units in deploy/systemd are checked with systemd-analyze (libvirt pulls it in anyway).
PACKAGES=(qemu-utils qemu-system-x86 libvirt-daemon-system virtinst redis-server
          busybox-static linux-image-cloud-amd64 cpio systemd)
STATE_DIR=/var/lib/virtfleet
LIBVIRT_URI=qemu:///system
WAIT_SECS=30
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REDIS_CONF=$SCRIPT_DIR/redis/virtfleet.conf

WITH_REDIS=0
for arg in "$@"; do
  case $arg in
    --with-redis) WITH_REDIS=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
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
if [ $WITH_REDIS = 1 ]; then
  if timeout 3 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -qx PONG; then
    log "redis: already answering on 127.0.0.1:6379"
  else
    [ -r "$REDIS_CONF" ] || die "missing $REDIS_CONF"
    install -d -m 0750 "$STATE_DIR/redis"   # redis runs as root here; data stays private
    redis-server "$REDIS_CONF" --daemonize yes --dir "$STATE_DIR/redis" \
      --pidfile "$STATE_DIR/redis/redis.pid" --logfile "$STATE_DIR/redis/redis.log"
    deadline=$((SECONDS + WAIT_SECS))
    until timeout 3 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -qx PONG; do
      (( SECONDS < deadline )) || die "redis not answering after ${WAIT_SECS}s (see $STATE_DIR/redis/redis.log)"
      sleep 0.2
    done
    log "redis: started on 127.0.0.1:6379 (appendonly $(redis-cli config get appendonly | tail -1), maxmemory-policy $(redis-cli config get maxmemory-policy | tail -1))"
  fi
fi

log "done"
