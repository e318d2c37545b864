export * from "./fleet-identity.js";
export * from "./host-agent.js";
export * from "./libvirt.js";
export * from "./name-locks.js";
export * from "./ownership-rule.js";
export * from "./provisioner.js";
export * from "./reconciler.js";
export * from "./vm-marker.js";
