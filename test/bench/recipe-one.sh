#!/usr/bin/env bash
# The seed recipe for one VM, as a user would script it: qemu-img + virt-install, then wait for the
# guest's ready line on its serial console. Usage: recipe-one.sh NAME DIR IMAGE_DIR
set -euo pipefail
name=$1 dir=$2 img=$3
qemu-img create -q -f qcow2 -b "$img/tiny.qcow2" -F qcow2 "$dir/$name-disk0.qcow2" 1G
virt-install --connect qemu:///system --name "$name" --ram 192 --vcpus 1 --virt-type qemu --osinfo generic \
  --import --boot "kernel=$img/tiny.vmlinuz,initrd=$img/tiny.initrd,kernel_args=console=ttyS0 quiet" \
  --disk "path=$dir/$name-disk0.qcow2,format=qcow2" --network none --graphics none --noautoconsole \
  --serial "file,path=$dir/$name-console.log" >/dev/null 2>&1
until grep -q VIRTFLEET_READY "$dir/$name-console.log" 2>/dev/null; do sleep 0.1; done
