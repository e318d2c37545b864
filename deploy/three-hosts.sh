#!/usr/bin/env bash
# A three-host fleet on one machine: three workers, each its own host (own id, storage folder,
# capacity and labels), sharing this machine's libvirtd and one Redis. Run after deploy/quickstart.sh
# (which installs everything and starts Redis).
#
#   deploy/three-hosts.sh          start hosts h1..h3, place VMs over them, show `hosts` and `ls`, clean up
#   deploy/three-hosts.sh --keep   ... and leave the hosts and VMs running
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STATE=/var/lib/virtfleet
# quickstart's Redis (host-setup.sh --with-redis) has a password, in this file.
if [ -z "${REDIS_URL:-}" ] && [ -z "${REDIS_PASSWORD:-}" ] && [ -z "${REDIS_PASSWORD_FILE:-}" ]; then
  export REDIS_PASSWORD_FILE=/etc/virtfleet/redis.password
fi
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
KEEP=0; [ "${1:-}" = --keep ] && KEEP=1
vf() { node apps/cli/dist/main.js "$@"; }
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
pids=()
stop() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
[ "$KEEP" = 1 ] || trap stop EXIT

labels=([1]="rack=r1" [2]="rack=r1" [3]="rack=r2,ssd=yes")
for i in 1 2 3; do
  mkdir -p "$STATE/hosts/h$i"
  VIRTFLEET_HOST_ID=h$i VIRTFLEET_STORAGE_DIR=$STATE/hosts/h$i VIRTFLEET_IMAGE_DIR=$STATE/images \
  VIRTFLEET_VIRT_TYPE=${VIRTFLEET_VIRT_TYPE:-qemu} VIRTFLEET_CAPACITY_MEMORY_MB=2048 VIRTFLEET_CAPACITY_VCPUS=8 \
  VIRTFLEET_LABELS=${labels[$i]} VIRTFLEET_HEARTBEAT_MS=1000 \
    node apps/worker/dist/main.js >>"$STATE/hosts/h$i.log" 2>&1 &
  pids+=($!)
done
until [ "$(vf hosts --json | grep -o '"up":true' | wc -l)" -ge 3 ]; do sleep 0.3; done

boot=(--memory 256 --disk size=1,backing=tiny --boot kernel=tiny,initrd=tiny,kernel_args=console=ttyS0 --network none)
say "virtfleet create --name 'web-{n}' --count 3 --group web ... --wait"
vf create --name 'web-{n}' --count 3 --group web "${boot[@]}" --wait | grep -E 'placed|done|failed'
say "virtfleet create --name db-1 --label rack=r2 ... --wait"
vf create --name db-1 --label rack=r2 "${boot[@]}" --wait | grep -E 'placed|done|failed'
say "virtfleet create --name ci-1 --host h2 ... --wait"
vf create --name ci-1 --host h2 "${boot[@]}" --wait | grep -E 'placed|done|failed'
say "virtfleet hosts"; vf hosts
say "virtfleet ls"; vf ls
if [ "$KEEP" = 0 ]; then
  say "virtfleet destroy web-1 web-2 web-3 db-1 ci-1 --wait"
  vf destroy web-1 web-2 web-3 db-1 ci-1 --wait | grep -E 'done|failed'
fi
