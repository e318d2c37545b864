/**
 * @virtfleet/hypervisor: the host's tools, run as argv arrays through a CommandRunner (execa):
 * qemu-img, virt-install, virsh and the guest agent, the host's storage and image folders
 * (HostPaths), and the account QEMU runs as.
 */
export * from "./host-paths.js";
export * from "./qemu-img.js";
export * from "./qemu-user.js";
export * from "./runner.js";
export * from "./virsh.js";
export * from "./virt-install.js";
