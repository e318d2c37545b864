#!/usr/bin/env bash
# Build a tiny direct-kernel-boot test guest for virtfleet's integration tests.
#
#   deploy/build-test-guest.sh IMAGE_DIR
#
# Produces in IMAGE_DIR (dir 0755, files 0644):
#   tiny.vmlinuz  newest /boot/vmlinuz-*-cloud-amd64 (linux-image-cloud-amd64)
#   tiny.initrd   gzip'd newc cpio: static busybox + /init which prints exactly one
#                 line "VIRTFLEET_READY cmdline=<contents of /proc/cmdline>" on the
#                 console, then idles forever (or powers off if the kernel command
#                 line contains "virtfleet.poweroff")
#   tiny.qcow2    empty 1G qcow2, base image for linked clones (never modified)
#
# Idempotent: each output is only rebuilt when missing or older than its inputs
# (or this script). Needs: busybox-static, linux-image-cloud-amd64, cpio, gzip,
# qemu-utils (see host-setup.sh). Boot with e.g. kernel_args="console=ttyS0".
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 IMAGE_DIR" >&2; exit 2; }
OUT=$1
SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
BUSYBOX=/bin/busybox
umask 022

log() { printf 'build-test-guest: %s\n' "$*"; }
die() { printf 'build-test-guest: ERROR: %s\n' "$*" >&2; exit 1; }

# Newest cloud kernel by version sort.
KERNEL=$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n1 || true)
[ -n "$KERNEL" ] || die "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)"
[ -r "$KERNEL" ] || die "$KERNEL not readable"
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (apt-get install busybox-static)"
# Must be static: the initramfs has no libc.
if command -v file >/dev/null && ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
  die "$BUSYBOX is not statically linked (install busybox-static, not busybox)"
fi
for c in cpio gzip qemu-img; do command -v "$c" >/dev/null || die "$c not found"; done

install -d -m 0755 "$OUT"
OUT=$(cd -- "$OUT" && pwd)

# up_to_date OUTPUT INPUT... : output exists and is newer than every input
up_to_date() {
  local o=$1; shift
  [ -s "$o" ] || return 1
  local i; for i in "$@"; do [ "$o" -nt "$i" ] || return 1; done
}

# --- kernel ----------------------------------------------------------------------
if up_to_date "$OUT/tiny.vmlinuz" "$KERNEL" && cmp -s "$KERNEL" "$OUT/tiny.vmlinuz"; then
  log "tiny.vmlinuz up to date"
else
  install -m 0644 "$KERNEL" "$OUT/tiny.vmlinuz.tmp"
  mv -f "$OUT/tiny.vmlinuz.tmp" "$OUT/tiny.vmlinuz"
  log "built $OUT/tiny.vmlinuz (from $KERNEL)"
fi

# --- initrd ----------------------------------------------------------------------
if up_to_date "$OUT/tiny.initrd" "$BUSYBOX" "$SELF"; then
  log "tiny.initrd up to date"
else
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  R=$TMP/root
  mkdir -p "$R"/{bin,sbin,dev,proc,sys,tmp,etc}
  cp "$BUSYBOX" "$R/bin/busybox"
  ln -s busybox "$R/bin/sh"
  # The kernel needs /dev/console in the initramfs for init's stdio before devtmpfs
  # is mounted; cpio can't mknod without root, so we ship a device entry only when
  # we can create one (we normally are root).
  mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || true
  mknod -m 666 "$R/dev/null" c 1 3 2>/dev/null || true
  cat >"$R/init" <<'EOF'
#!/bin/sh
# virtfleet tiny test guest
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
exec </dev/console >/dev/console 2>&1
CMDLINE=$(cat /proc/cmdline)
echo "VIRTFLEET_READY cmdline=$CMDLINE"
case " $CMDLINE " in
  *" virtfleet.poweroff "*|*" virtfleet.poweroff="*)
    sync
    poweroff -f
    ;;
esac
while true; do sleep 3600; done
EOF
  chmod 0755 "$R/init"
  (cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) \
    | gzip -9 >"$OUT/tiny.initrd.tmp"
  chmod 0644 "$OUT/tiny.initrd.tmp"
  mv -f "$OUT/tiny.initrd.tmp" "$OUT/tiny.initrd"
  log "built $OUT/tiny.initrd ($(stat -c %s "$OUT/tiny.initrd") bytes)"
fi

# --- base disk -------------------------------------------------------------------
if [ -s "$OUT/tiny.qcow2" ] && qemu-img info -U "$OUT/tiny.qcow2" 2>/dev/null | grep -q '^file format: qcow2'; then
  log "tiny.qcow2 up to date"
else
  rm -f "$OUT/tiny.qcow2.tmp"
  qemu-img create -q -f qcow2 "$OUT/tiny.qcow2.tmp" 1G
  chmod 0644 "$OUT/tiny.qcow2.tmp"
  mv -f "$OUT/tiny.qcow2.tmp" "$OUT/tiny.qcow2"
  log "built $OUT/tiny.qcow2 (qcow2, 1G virtual)"
fi

chmod 0755 "$OUT"
# Shared images are root's and read-only to QEMU (virtfleet refuses one QEMU could write). Older
# virtfleet let libvirt chown images to the QEMU user while a VM used them: give them back.
chown root:root "$OUT/tiny.vmlinuz" "$OUT/tiny.initrd" "$OUT/tiny.qcow2"
chmod 0644 "$OUT/tiny.vmlinuz" "$OUT/tiny.initrd" "$OUT/tiny.qcow2"
