export * from "./host-paths.js";
export * from "./qemu-img.js";
export * from "./qemu-user.js";
export * from "./runner.js";
export * from "./virsh.js";
export * from "./virt-install.js";
