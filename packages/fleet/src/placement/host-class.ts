import { createHash } from "node:crypto";
import type { HostStatus } from "@virtfleet/core";

/**
 * A host's eligibility class: a short hash of the static attributes that decide whether a VM may go
 * on it (labels, images, virt types, the networks allow-list). Hosts of one class are eligible for
 * the same requests, so placement judges eligibility once per class and keeps one free-room index
 * (a sorted set) per class; room, liveness and drain are judged per host, in Lua.
 */
export function hostClass(status: Pick<HostStatus, "labels" | "images" | "virtTypes" | "networks">): string {
  const canonical = JSON.stringify([
    Object.entries(status.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    [...status.images].sort(),
    [...status.virtTypes].sort(),
    status.networks === undefined ? null : [...status.networks].sort(),
  ]);
  return createHash("sha1").update(canonical).digest("hex").slice(0, 16);
}
