#!/usr/bin/env bash
# virtfleet quickstart: a local fleet on this machine (Redis + one worker) that provisions demo VMs.
#
#   deploy/quickstart.sh            set up, start the fleet, create 3 demo VMs that boot, then destroy them
#   deploy/quickstart.sh --keep     ... and leave the demo VMs running
#   deploy/quickstart.sh --stop     stop the local worker and Redis that quickstart started
#
# Environment: VIRTFLEET_VIRT_TYPE (default qemu: TCG works everywhere, also under nested virtualisation),
# DEMO_COUNT (default 3). Redis: REDIS_URL (default redis://127.0.0.1:6379, the local Redis host-setup.sh
# runs as user redis) with REDIS_PASSWORD_FILE (default /etc/virtfleet/redis.password, made by host-setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STATE=/var/lib/virtfleet
IMAGES=$STATE/images
PIDFILE=$STATE/worker.pid
# The local Redis that host-setup.sh --with-redis runs has a password, generated once into this file.
REDIS_PASSWORD_DEFAULT_FILE=/etc/virtfleet/redis.password
if [ -z "${REDIS_URL:-}" ] && [ -z "${REDIS_PASSWORD:-}" ] && [ -z "${REDIS_PASSWORD_FILE:-}" ]; then
  export REDIS_PASSWORD_FILE=$REDIS_PASSWORD_DEFAULT_FILE
fi
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export TURBO_TELEMETRY_DISABLED=1
KEEP=0
for arg in "$@"; do
  case $arg in
    --keep) KEEP=1 ;;
    --stop)
      if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then kill -TERM "$(cat "$PIDFILE")"; echo "quickstart: worker stopped"; fi
      rm -f "$PIDFILE"
      # The password through the environment, never on a command line.
      auth=${REDIS_PASSWORD:-}
      [ -z "$auth" ] && [ -n "${REDIS_PASSWORD_FILE:-}" ] && [ -r "$REDIS_PASSWORD_FILE" ] && auth=$(cat "$REDIS_PASSWORD_FILE")
      if [ -n "$auth" ]; then
        REDISCLI_AUTH=$auth redis-cli --no-auth-warning -u "$REDIS_URL" shutdown >/dev/null 2>&1 && echo "quickstart: redis stopped" || true
      else
        redis-cli -u "$REDIS_URL" shutdown >/dev/null 2>&1 && echo "quickstart: redis stopped" || true
      fi
      exit 0 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "quickstart: unknown argument: $arg" >&2; exit 2 ;;
  esac
done
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "host set-up: packages, libvirtd, Redis (user redis, a password, AOF, noeviction)"
bash deploy/host-setup.sh --with-redis

say "build virtfleet"
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build --silent

say "test guest image 'tiny' into $IMAGES"
bash deploy/build-test-guest.sh "$IMAGES"

say "worker for host $(hostname)"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "worker already running (pid $(cat "$PIDFILE"))"
else
  VIRTFLEET_VIRT_TYPE=${VIRTFLEET_VIRT_TYPE:-qemu} VIRTFLEET_STORAGE_DIR=$STATE/vms VIRTFLEET_IMAGE_DIR=$IMAGES \
    nohup node apps/worker/dist/main.js >>"$STATE/worker.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    npx --no-install virtfleet hosts --json 2>/dev/null | grep -q '"up":true' && break
    sleep 0.2
  done
  echo "worker started (pid $(cat "$PIDFILE"), log $STATE/worker.log)"
fi
npx --no-install virtfleet hosts

say "create ${DEMO_COUNT:-3} demo VMs and wait until each guest has booted"
npx --no-install virtfleet create --name 'demo-{n}' --count "${DEMO_COUNT:-3}" --memory 256 \
  --disk size=1,backing=tiny --boot kernel=tiny,initrd=tiny,kernel_args="console=ttyS0 quiet" \
  --network none --wait --wait-ready

say "the fleet's VMs"
npx --no-install virtfleet ls
for d in "$STATE"/vms/demo-*/; do
  printf '%s: %s\n' "$(basename "$d")" "$(grep -a -m1 VIRTFLEET_READY "$d/console.log" | tr -d '\r')"
done

if [ "$KEEP" = 1 ]; then
  say "demo VMs left running: destroy them with  npx virtfleet destroy demo-1 demo-2 ... --wait"
else
  say "destroy the demo VMs"
  mapfile -t names < <(seq 1 "${DEMO_COUNT:-3}" | sed 's/^/demo-/')
  npx --no-install virtfleet destroy "${names[@]}" --wait
fi
say "done: the fleet (Redis + worker) is still up; stop it with  deploy/quickstart.sh --stop"
