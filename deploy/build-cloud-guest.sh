#!/usr/bin/env bash
# Build a small Debian 12 cloud guest (cloud-init, qemu-guest-agent, openssh-server) for virtfleet's
# tests, from Debian's packages with mmdebstrap.
#
#   deploy/build-cloud-guest.sh IMAGE_DIR
#
# Produces in IMAGE_DIR (dir 0755, files root-owned 0644, readable by the QEMU user):
#   debian12.qcow2    ext4 root file system on the whole disk (no partition table), 2 GiB virtual
#   debian12.vmlinuz  the guest's kernel (linux-image-cloud-amd64)
#   debian12.initrd   its initramfs
#   .debian12.stamp   sha256 of this script: the images are rebuilt only when the script changes
#
# Boot it with direct kernel boot, e.g. virtfleet create ... --disk size=4,backing=debian12
#   --boot kernel=debian12,initrd=debian12,kernel_args="root=/dev/vda console=ttyS0"
# The image has no SSH host keys (cloud-init makes them at first boot) and no password for anyone;
# cloud-init looks only for a NoCloud seed (a `cidata` ISO), falling back to None without one, and
# prints "Cloud-init v. ... finished at ..." on the console when its last stage is done.
# qemu-guest-agent starts when the domain has the virtio-serial port org.qemu.guest_agent.0.
#
# Needs root, mmdebstrap, e2fsprogs, qemu-utils and network access to the Debian mirror
# (VIRTFLEET_DEBIAN_MIRROR, default http://deb.debian.org/debian). See host-setup.sh.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 IMAGE_DIR" >&2; exit 2; }
OUT=$1
SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
MIRROR=${VIRTFLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
NAME=debian12
FS_SIZE=2G
PACKAGES=systemd-sysv,linux-image-cloud-amd64,cloud-init,qemu-guest-agent,openssh-server,ifupdown,isc-dhcp-client,netbase,udev
umask 022

log() { printf 'build-cloud-guest: %s\n' "$*"; }
die() { printf 'build-cloud-guest: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (mmdebstrap and mkfs.ext4 -d keep the guest's file owners)"
for c in mmdebstrap mkfs.ext4 qemu-img flock sha256sum; do command -v "$c" >/dev/null || die "$c not found (see deploy/host-setup.sh)"; done

install -d -m 0755 "$OUT"
OUT=$(cd -- "$OUT" && pwd)
STAMP=$OUT/.$NAME.stamp
WANT=$(sha256sum "$SELF" | cut -d' ' -f1)

up_to_date() {
  [ -s "$OUT/$NAME.qcow2" ] && [ -s "$OUT/$NAME.vmlinuz" ] && [ -s "$OUT/$NAME.initrd" ] &&
    [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]
}

# One build per image dir at a time; a second caller waits, then finds the images up to date.
exec 9>"$OUT/.$NAME.lock"
flock 9
if up_to_date; then
  log "$NAME up to date in $OUT"
  exit 0
fi

START=$SECONDS
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"; rm -f "$OUT/$NAME".*.tmp' EXIT
ROOT=$TMP/root

# Inside the guest, run by mmdebstrap's customize hook with the root dir as $1.
read -r -d '' CUSTOMIZE <<'EOF' || true
set -eu
R=$1
# cloud-init writes interfaces.d/50-cloud-init; ifupdown must read it.
printf 'source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n' >"$R/etc/network/interfaces"
mkdir -p "$R/etc/network/interfaces.d"
# The kernel mounts the root read-only (no "rw" on the command line); systemd remounts it from here.
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$R/etc/fstab"
# Only a NoCloud seed, else None: never wait for a metadata service on the network.
mkdir -p "$R/etc/cloud/cloud.cfg.d"
# minbase has no `locales` (update-locale): without `locale: false` cloud-init's locale module fails
# and `cloud-init status` says error.
printf 'datasource_list: [ NoCloud, None ]\nlocale: false\n' >"$R/etc/cloud/cloud.cfg.d/90-virtfleet.cfg"
# e2scrub_reap takes most of a minute under TCG and is of no use on a throw-away test guest.
ln -sf /dev/null "$R/etc/systemd/system/e2scrub_reap.service"
ln -sf /dev/null "$R/etc/systemd/system/e2scrub_all.timer"
# No SSH host keys in the image (cloud-init generates them), no password, a fresh machine-id per VM.
rm -f "$R"/etc/ssh/ssh_host_*
chroot "$R" usermod -p '*' root
: >"$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
printf 'debian\n' >"$R/etc/hostname"
rm -f "$R/etc/resolv.conf"
# The agent's unit is started by udev when the virtio-serial port appears: check it is wired.
grep -rqs 'org.qemu.guest_agent.0' "$R"/usr/lib/systemd/system/qemu-guest-agent.service "$R"/lib/systemd/system/qemu-guest-agent.service \
  || { echo "qemu-guest-agent.service does not bind to org.qemu.guest_agent.0" >&2; exit 1; }
grep -rqs 'qemu-guest-agent.service' "$R"/usr/lib/udev/rules.d "$R"/lib/udev/rules.d \
  || { echo "no udev rule starts qemu-guest-agent.service" >&2; exit 1; }
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb "$R"/var/log/*.log
EOF

log "mmdebstrap $SUITE from $MIRROR"
mmdebstrap --variant=minbase --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook="$CUSTOMIZE" \
  "$SUITE" "$ROOT" "$MIRROR"

KERNEL=$(ls -1 "$ROOT"/boot/vmlinuz-* | sort -V | tail -n1)
INITRD=$(ls -1 "$ROOT"/boot/initrd.img-* | sort -V | tail -n1)
[ -s "$KERNEL" ] && [ -s "$INITRD" ] || die "no kernel or initrd in the guest's /boot"

log "mkfs.ext4 ($FS_SIZE) and qemu-img convert"
truncate -s "$FS_SIZE" "$TMP/root.raw"
mkfs.ext4 -q -F -L root -d "$ROOT" "$TMP/root.raw"
qemu-img convert -f raw -O qcow2 "$TMP/root.raw" "$OUT/$NAME.qcow2.tmp"
install -m 0644 "$KERNEL" "$OUT/$NAME.vmlinuz.tmp"
install -m 0644 "$INITRD" "$OUT/$NAME.initrd.tmp"
for f in qcow2 vmlinuz initrd; do
  chown root:root "$OUT/$NAME.$f.tmp"
  chmod 0644 "$OUT/$NAME.$f.tmp"
  mv -f "$OUT/$NAME.$f.tmp" "$OUT/$NAME.$f"
done
printf '%s\n' "$WANT" >"$STAMP.tmp"
chmod 0644 "$STAMP.tmp"
mv -f "$STAMP.tmp" "$STAMP"
chmod 0755 "$OUT"
log "built $OUT/$NAME.{qcow2,vmlinuz,initrd} in $((SECONDS - START)) s ($(du -k "$OUT/$NAME.qcow2" | cut -f1) KiB qcow2, kernel $(basename "$KERNEL"))"
