/**
 * @virtfleet/cloud-init: the cloud-init NoCloud documents of a VM (user-data, meta-data,
 * network-config) built from its spec, and the seed ISO that carries them.
 */
export * from "./documents.js";
export * from "./seed-iso.js";
