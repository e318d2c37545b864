import {
  firstDisallowedNetwork,
  formatNetworkRef,
  hasImage,
  type NetworkAllowList,
  type PlacementOptions,
  VirtfleetError,
  type VmSpec,
} from "@virtfleet/core";
import { compareHosts } from "./policy.js";

/** What placement knows of a host. */
export interface HostCandidate {
  hostId: string;
  up: boolean;
  draining: boolean;
  labels: Record<string, string>;
  images: readonly string[];
  /** Catalogued images this host lacks but pulls when a VM needs them (the catalogue has their URL). */
  pullable?: readonly string[];
  virtTypes: readonly string[];
  /** The networks the host offers; undefined: any. */
  networks?: NetworkAllowList;
  capacity: { memoryMiB: number; vcpus: number };
  allocated: { memoryMiB: number; vcpus: number };
  /** VMs of the request's anti-affinity group already on this host. */
  groupMembers: number;
}

/** The images a spec needs, by name as the caller wrote them. */
export function requiredImages(spec: VmSpec): string[] {
  const images = spec.disks.flatMap((d) => (d.backing === undefined ? [] : [d.backing]));
  if (spec.install.method === "cdrom") images.push(spec.install.image);
  if (spec.install.method === "kernel") {
    images.push(spec.install.kernel);
    if (spec.install.initrd !== undefined) images.push(spec.install.initrd);
  }
  return images;
}

export type Rejection = "down" | "draining" | "labels" | "network" | "image" | "virt-type" | "room";

/** Why a host cannot take the VM, or undefined when it can. */
export function rejectHost(host: HostCandidate, spec: VmSpec, options: PlacementOptions): Rejection | undefined {
  if (!host.up) return "down";
  if (host.draining) return "draining";
  for (const [k, v] of Object.entries(options.requiredLabels)) if (host.labels[k] !== v) return "labels";
  if (firstDisallowedNetwork(host.networks, spec.networks) !== undefined) return "network";
  if (!requiredImages(spec).every((i) => hasImage(host.images, i) || (host.pullable?.includes(i) ?? false)))
    return "image";
  if (spec.virtType !== undefined && !host.virtTypes.includes(spec.virtType)) return "virt-type";
  if (
    host.allocated.memoryMiB + spec.memoryMiB > host.capacity.memoryMiB ||
    host.allocated.vcpus + spec.vcpus > host.capacity.vcpus
  ) {
    return "room";
  }
  return undefined;
}

/** True when the host already holds every image the spec needs (it need not pull any first). */
export function holdsImages(host: Pick<HostCandidate, "images">, spec: VmSpec): boolean {
  return requiredImages(spec).every((i) => hasImage(host.images, i));
}

/**
 * The hosts that can take the VM on these numbers, best first: fewest VMs of the request's group
 * (anti-affinity), then those that hold the images the VM needs (others pull them first), then by
 * the policy's order (compareHosts, the model of the claim scripts: `spread` most free memory
 * first, `pack` least; then by id).
 */
export function rankHosts(hosts: readonly HostCandidate[], spec: VmSpec, options: PlacementOptions): string[] {
  const asPlaced = (h: HostCandidate) => ({
    id: h.hostId,
    capMem: h.capacity.memoryMiB,
    capVcpus: h.capacity.vcpus,
    mem: h.allocated.memoryMiB,
    vcpus: h.allocated.vcpus,
    disk: 0,
    drained: h.draining,
    draining: h.draining,
  });
  return hosts
    .filter((h) => rejectHost(h, spec, options) === undefined)
    .sort((a, b) => {
      if (a.groupMembers !== b.groupMembers) return a.groupMembers - b.groupMembers;
      // A host that holds the images boots the VM without pulling one first.
      const held = Number(holdsImages(b, spec)) - Number(holdsImages(a, spec));
      if (held !== 0) return held;
      return compareHosts(options.policy, asPlaced(a), 0, asPlaced(b), 0);
    })
    .map((h) => h.hostId);
}

const REJECTION_TEXT: Readonly<Record<Rejection, string>> = {
  down: "down",
  draining: "draining",
  labels: "without the labels",
  network: "not offering the networks",
  image: "without the images",
  "virt-type": "without the virt type",
  room: "without room",
};

/** A one-line reason for NO_CAPACITY: how many hosts were turned down and why. */
export function explainNoRoom(hosts: readonly HostCandidate[], spec: VmSpec, options: PlacementOptions): string {
  if (hosts.length === 0) return "no host is registered in the fleet";
  const counts = new Map<Rejection, number>();
  for (const h of hosts) {
    const r = rejectHost(h, spec, options) ?? "room";
    counts.set(r, (counts.get(r) ?? 0) + 1);
  }
  const parts = [...counts].map(([r, n]) => `${n} ${REJECTION_TEXT[r]}`);
  return `no host can take ${spec.memoryMiB} MiB and ${spec.vcpus} vCPU(s): ${parts.join(", ")}`;
}

/**
 * FORBIDDEN when the spec names a network no eligible host offers: the pinned host (when `pinned` is
 * given) or every host that is up. Its field is `spec.networks.N`, the first NIC none offers (or
 * `spec.networks` when each is offered somewhere but no one host offers them all). Undefined otherwise,
 * and when no host is up (nothing is known then).
 */
export function networkRefusal(
  hosts: readonly HostCandidate[],
  spec: VmSpec,
  pinned?: string,
): VirtfleetError | undefined {
  const nic = (i: number) => formatNetworkRef(spec.networks[i] as VmSpec["networks"][number]);
  if (pinned !== undefined) {
    const host = hosts.find((h) => h.hostId === pinned);
    const i = host === undefined ? undefined : firstDisallowedNetwork(host.networks, spec.networks);
    if (i === undefined) return undefined;
    return new VirtfleetError("FORBIDDEN", `host "${pinned}" does not offer the network ${nic(i)}`, {
      field: `spec.networks.${i}`,
    });
  }
  const up = hosts.filter((h) => h.up);
  if (up.length === 0) return undefined;
  const i = spec.networks.findIndex((n) => up.every((h) => firstDisallowedNetwork(h.networks, [n]) !== undefined));
  if (i >= 0) {
    return new VirtfleetError("FORBIDDEN", `no host that is up offers the network ${nic(i)}`, {
      field: `spec.networks.${i}`,
    });
  }
  if (up.every((h) => firstDisallowedNetwork(h.networks, spec.networks) !== undefined)) {
    return new VirtfleetError(
      "FORBIDDEN",
      `no host that is up offers all of the networks ${spec.networks.map((n) => formatNetworkRef(n)).join(", ")}`,
      { field: "spec.networks" },
    );
  }
  return undefined;
}
