#!/usr/bin/env bash
# End-to-end smoke test: boot the tiny test guest under libvirt and wait for it.
#
#   deploy/smoke-boot.sh [IMAGE_DIR]     (default /var/lib/virtfleet/images)
#
# Builds the guest (build-test-guest.sh), creates a linked clone of tiny.qcow2,
# virt-installs domain vf-smoke-<pid> (TCG, --network none), waits for the
# "VIRTFLEET_READY cmdline=..." console line, checks the cmdline and the virtfleet
# metadata round trip, then destroys + undefines the domain and removes its files.
# Needs libvirtd running (deploy/host-setup.sh). Exit 0 = pass.
set -euo pipefail

IMG=${1:-/var/lib/virtfleet/images}
VMS=/var/lib/virtfleet/vms
URI=qemu:///system
NS=https://virtfleet.dev/xmlns/vm/1
NAME=vf-smoke-$$
DIR=$VMS/$NAME
TIMEOUT=${SMOKE_TIMEOUT:-60}
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
export LC_ALL=C   # virsh/virt-install messages are translated otherwise

log() { printf 'smoke-boot: %s\n' "$*"; }
ms()  { echo $(( $(date +%s%N) / 1000000 )); }

cleanup() {
  virsh -q -c "$URI" destroy "$NAME" >/dev/null 2>&1 || true
  virsh -q -c "$URI" undefine --nvram "$NAME" >/dev/null 2>&1 || true
  rm -rf -- "$DIR"
}
trap cleanup EXIT

"$HERE/build-test-guest.sh" "$IMG"

install -d -m 0755 "$VMS" "$DIR"   # qemu runs as libvirt-qemu: every dir on the path needs o+x
qemu-img create -q -f qcow2 -b "$IMG/tiny.qcow2" -F qcow2 "$DIR/disk0.qcow2"

# Disk is given via --xml instead of --disk path=...: with --disk path=, virt-install
# (4.1) silently creates and *autostarts* a libvirt dir storage pool named after the
# disk's parent directory (one per VM dir). --disk none + --xml avoids that.
argv=(virt-install --connect "$URI"
  --name "$NAME" --memory 256 --vcpus 1 --virt-type qemu --osinfo generic
  --import --boot "kernel=$IMG/tiny.vmlinuz,initrd=$IMG/tiny.initrd,kernel_args=console=ttyS0 virtfleet.test=1"
  --disk none
  --xml ./devices/disk/@type=file --xml ./devices/disk/@device=disk
  --xml ./devices/disk/driver/@name=qemu --xml ./devices/disk/driver/@type=qcow2
  --xml "./devices/disk/source/@file=$DIR/disk0.qcow2"
  --xml ./devices/disk/target/@dev=vda --xml ./devices/disk/target/@bus=virtio
  --network none --graphics none --noautoconsole
  --serial "file,path=$DIR/console.log"
  --xml "./metadata/vm/@xmlns=$NS" --xml "./metadata/vm/@id=$NAME"
  --xml "xpath.set=./metadata/vm/spec,xpath.value=\"{\\\"smoke\\\":true,\\\"n\\\":\\\"a,b=c\\\"}\""
)
t0=$(ms)
"${argv[@]}" >/dev/null 2>"$DIR/virt-install.err" || { cat "$DIR/virt-install.err" >&2; exit 1; }
t1=$(ms)
log "virt-install returned after $((t1 - t0)) ms, state: $(virsh -q -c "$URI" domstate "$NAME")"

line=""
while [ $(( $(ms) - t0 )) -lt $((TIMEOUT * 1000)) ]; do
  line=$(grep -a -m1 '^VIRTFLEET_READY ' "$DIR/console.log" 2>/dev/null | tr -d '\r' || true)
  [ -n "$line" ] && break
  sleep 0.1
done
t2=$(ms)
[ -n "$line" ] || { log "FAIL: no VIRTFLEET_READY within ${TIMEOUT}s"; tail -5 "$DIR/console.log" >&2 || true; exit 1; }
log "ready after $((t2 - t0)) ms: $line"
[ "$line" = "VIRTFLEET_READY cmdline=console=ttyS0 virtfleet.test=1" ] || { log "FAIL: unexpected line"; exit 1; }

meta=$(virsh -c "$URI" metadata "$NAME" "$NS")
grep -q "<spec>{\"smoke\":true,\"n\":\"a,b=c\"}</spec>" <<<"$meta" || { log "FAIL: metadata: $meta"; exit 1; }
log "metadata ok"

cleanup
virsh -c "$URI" dominfo "$NAME" >/dev/null 2>&1 && { log "FAIL: domain still defined"; exit 1; }
log "PASS (cleaned up)"
