import {
  type ErrorCode,
  type HostStatus,
  hasImage,
  type PlacementOptions,
  parseNetworkAllowList,
  totalDiskGiB,
  VirtfleetError,
  type VmSpec,
} from "@virtfleet/core";
import type { HostRegistry, HostView } from "../hosts/host-registry.js";
import type { ImageCatalogue } from "../images/image-catalogue.js";
import type { VmRegistry } from "../records/vm-registry.js";
import type { RoomRequest } from "./capacity-ledger.js";
import {
  explainNoRoom,
  type HostCandidate,
  holdsImages,
  networkRefusal,
  rejectHost,
  requiredImages,
} from "./eligibility.js";
import { hostClass } from "./host-class.js";
import type { PlacementPolicy } from "./policy.js";

/** How long placement may reuse the hosts list by default (ms). */
export const DEFAULT_PLACEMENT_CACHE_MS = 1000;

/** The candidates of one claim: eligible classes (walked in their indexes in Lua), or a pinned host. */
export type Candidates = RoomRequest["candidates"];

/** What placement reads of the fleet (at most once per cache period), with what it derives from it once. */
interface HostList {
  /** One representative candidate per eligibility class. */
  classes: Map<string, HostCandidate>;
  /**
   * Every host as a placement candidate (no group): read only when needed (a pinned host, a
   * refusal to explain, `candidates`), once per list.
   */
  all(): Promise<HostCandidate[]>;
}

/** What eligibility reads of a host's status: the fields its class is made of, and what can be pulled. */
function eligibilityOf(status: HostStatus, pullable: readonly string[]) {
  return {
    hostId: status.hostId,
    labels: status.labels,
    images: status.images,
    pullable,
    virtTypes: status.virtTypes,
    ...(status.networks === undefined ? {} : { networks: parseNetworkAllowList(status.networks) }),
  };
}

/** A class's representative: its eligibility only (up, room and drain are judged per host, in Lua). */
function representative(status: HostStatus, pullable: readonly string[]): HostCandidate {
  return {
    ...eligibilityOf(status, pullable),
    up: true,
    draining: false,
    capacity: { memoryMiB: Number.POSITIVE_INFINITY, vcpus: Number.POSITIVE_INFINITY },
    allocated: { memoryMiB: 0, vcpus: 0 },
    groupMembers: 0,
  };
}

/** What placement needs to know of each host. */
function toCandidates(
  hosts: readonly HostView[],
  groupMembers: ReadonlyMap<string, number>,
  pullable: readonly string[],
): HostCandidate[] {
  return hosts.map((h) => ({
    ...eligibilityOf(h.status, pullable),
    up: h.up,
    draining: h.draining,
    capacity: h.allocation.capacity,
    allocated: h.allocation.allocated,
    groupMembers: groupMembers.get(h.status.hostId) ?? 0,
  }));
}

/** Images the spec needs that no up host has or can pull. */
function missingImages(hosts: readonly HostCandidate[], spec: VmSpec): string[] {
  const up = hosts.filter((h) => h.up);
  if (up.length === 0) return [];
  return requiredImages(spec).filter(
    (image) => !up.some((h) => hasImage(h.images, image) || (h.pullable?.includes(image) ?? false)),
  );
}

/** The spec field that names an image. */
function imageField(spec: VmSpec, image: string): string {
  const disk = spec.disks.findIndex((d) => d.backing === image);
  if (disk >= 0) return `spec.disks.${disk}.backing`;
  if (spec.install.method === "cdrom") return "spec.install.image";
  if (spec.install.method === "kernel")
    return spec.install.kernel === image ? "spec.install.kernel" : "spec.install.initrd";
  return "spec";
}

/**
 * Where a VM goes, from the producer's side: reads (and caches) the eligibility classes (one
 * representative status each, not every host), judges eligibility (labels, networks, images, virt
 * type) once per class, and hands the eligible classes
 * (the classes that hold the VM's images first) to a claim script, which walks their free-room
 * indexes and judges room, liveness and drain on live numbers (includes/room.lua). Explains a
 * refusal (NO_CAPACITY, IMAGE_NOT_FOUND, FORBIDDEN, a pinned host's problem).
 */
export class Placer {
  readonly #hosts: HostRegistry;
  readonly #images: ImageCatalogue;
  readonly #vms: VmRegistry;
  readonly #cacheMs: number;
  #cache: { at: number; list: Promise<HostList> } | undefined;

  constructor(deps: { hosts: HostRegistry; images: ImageCatalogue; vms: VmRegistry; cacheMs?: number }) {
    this.#hosts = deps.hosts;
    this.#images = deps.images;
    this.#vms = deps.vms;
    this.#cacheMs = deps.cacheMs ?? DEFAULT_PLACEMENT_CACHE_MS;
  }

  /**
   * The hosts list: a read started at or after `since` (default: within the last cache period) is
   * reused, so concurrent requests share one read. The claim scripts judge liveness, drain and room
   * on live numbers, so a stale list only costs a retry with a fresh one.
   */
  async #list(since = Date.now() - this.#cacheMs): Promise<HostList> {
    if (this.#cache !== undefined && this.#cache.at >= since) return this.#cache.list;
    const now = Date.now();
    const list = Promise.all([this.#hosts.classes(), this.#images.pullable()]).then(async ([stored, pullable]) => {
      let views: Promise<HostView[]> | undefined;
      let all: Promise<HostCandidate[]> | undefined;
      const readViews = () => {
        views ??= this.#hosts.list();
        return views;
      };
      const readAll = () => {
        all ??= readViews().then((v) => toCandidates(v, new Map(), pullable));
        return all;
      };
      const classes = new Map<string, HostCandidate>();
      for (const [cls, status] of stored) classes.set(cls, representative(status, pullable));
      // No class kept yet (a fleet whose hosts have not beaten since an upgrade): from every host.
      if (classes.size === 0) {
        for (const v of await readViews()) {
          const cls = hostClass(v.status);
          if (!classes.has(cls)) classes.set(cls, representative(v.status, pullable));
        }
      }
      return { classes, all: readAll };
    });
    this.#cache = { at: now, list };
    try {
      return await list;
    } catch (error) {
      this.#cache = undefined;
      throw error;
    }
  }

  /**
   * What placement knows of every registered host, from a hosts list read at or after `since`
   * (see #list). Not to be changed: it may be shared.
   */
  async candidates(group?: string, since?: number): Promise<readonly HostCandidate[]> {
    const list = await this.#list(since);
    if (group === undefined) return list.all();
    const [all, members] = await Promise.all([list.all(), this.#vms.groupCounts(group)]);
    return all.map((c) => ({ ...c, groupMembers: members.get(c.hostId) ?? 0 }));
  }

  /**
   * The candidates a VM may go on, holders of its images first (each a claim to try in turn); or why
   * a pinned host cannot take it.
   */
  async #eligible(
    list: HostList,
    all: () => Promise<readonly HostCandidate[]>,
    spec: VmSpec,
    placement: PlacementOptions,
    exclude: readonly string[],
  ): Promise<{ tries: Candidates[] } | { error: VirtfleetError }> {
    if (placement.host === undefined) {
      const eligible: string[] = [];
      const holders: string[] = [];
      // Liveness, drain and room are judged per host, in Lua (a representative has none of them).
      for (const [cls, rep] of list.classes) {
        if (rejectHost(rep, spec, placement) !== undefined) continue;
        eligible.push(cls);
        if (holdsImages(rep, spec)) holders.push(cls);
      }
      const tries: Candidates[] = [];
      // Hosts that hold the VM's images first: another host must pull one before it can boot.
      if (holders.length > 0 && holders.length < eligible.length) tries.push({ classes: holders, exclude });
      tries.push({ classes: eligible, exclude });
      return { tries };
    }
    const pinned = (await all()).find((h) => h.hostId === placement.host);
    const fail = (code: ErrorCode, message: string, field = "host") => ({
      error: new VirtfleetError(code, message, { field }),
    });
    if (pinned === undefined) return fail("HOST_NOT_FOUND", `no host "${placement.host}" in the fleet`);
    if (!pinned.up) return fail("HOST_NOT_FOUND", `host "${placement.host}" is down`);
    const why = rejectHost(pinned, spec, { ...placement, requiredLabels: {} });
    if (why === "draining") return fail("NO_CAPACITY", `host "${placement.host}" is draining`);
    if (why === "network") {
      const refusal = networkRefusal([pinned], spec, pinned.hostId);
      if (refusal !== undefined) return { error: refusal };
    }
    if (why === "image") return fail("IMAGE_NOT_FOUND", `host "${placement.host}" lacks an image the VM needs`);
    if (why === "virt-type") {
      return fail("INVALID_SPEC", `host "${placement.host}" cannot run virt type ${spec.virtType}`, "spec.virtType");
    }
    return { tries: [{ hosts: [pinned.hostId] }] };
  }

  /**
   * Why no host took the VM: NO_CAPACITY, FORBIDDEN when no up host offers one of its networks, or
   * IMAGE_NOT_FOUND when no up host has its image.
   */
  #noRoom(all: readonly HostCandidate[], spec: VmSpec, placement: PlacementOptions): VirtfleetError {
    if (placement.host !== undefined) {
      return new VirtfleetError(
        "NO_CAPACITY",
        `host "${placement.host}" has no room for ${spec.memoryMiB} MiB and ${spec.vcpus} vCPU(s)`,
      );
    }
    const refusal = networkRefusal(all, spec);
    if (refusal !== undefined) return refusal;
    const missing = missingImages(all, spec);
    if (missing.length > 0) {
      return new VirtfleetError(
        "IMAGE_NOT_FOUND",
        `no host that is up has the image(s) ${missing.map((m) => `"${m}"`).join(", ")}`,
        { field: imageField(spec, missing[0] as string) },
      );
    }
    return new VirtfleetError("NO_CAPACITY", explainNoRoom(all, spec, placement));
  }

  /**
   * Tries `attempt` with the candidates a VM may go on until it finds room: once more with a hosts
   * list read since this request began when the cached one found none (a host may just have come up
   * or changed; a burst of refused requests shares that read), then every second or so until
   * `waitMs` has passed. Throws the pinned host's problem, or NO_CAPACITY / IMAGE_NOT_FOUND.
   * (`attempt` is always called at least once: admission also answers for a name already taken.)
   */
  async withRoom<T>(
    spec: VmSpec,
    placement: PlacementOptions,
    waitMs: number,
    exclude: readonly string[],
    attempt: (candidates: Candidates, policy: PlacementPolicy) => Promise<T | undefined>,
  ): Promise<T> {
    const began = Date.now();
    const deadline = began + waitMs;
    let since: number | undefined; // the first try takes the cached list
    for (;;) {
      const list = await this.#list(since);
      const all = async () => {
        const every = await list.all();
        return exclude.length === 0 ? every : every.filter((h) => !exclude.includes(h.hostId));
      };
      const eligible = await this.#eligible(list, all, spec, placement, exclude);
      const policy = placement.host !== undefined ? "order" : placement.policy;
      const tries = "tries" in eligible ? eligible.tries : [{ hosts: [] }];
      let done: T | undefined;
      for (const candidates of tries) {
        done = await attempt(candidates, policy);
        if (done !== undefined) return done;
      }
      if ("error" in eligible) throw eligible.error;
      if (since === undefined) {
        since = began;
        continue;
      }
      if (Date.now() >= deadline) throw this.#noRoom(await all(), spec, placement);
      since = Date.now();
      await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(50, deadline - Date.now()))));
    }
  }

  /**
   * Places a VM and claims its room, atomically: the pinned host, else the best host by policy whose
   * claim succeeds. Throws HOST_NOT_FOUND for a pinned host that is unknown or down, NO_CAPACITY when
   * no host has room (after waiting up to `waitMs` for room to free up).
   */
  placeAndClaim(
    spec: VmSpec,
    placement: PlacementOptions,
    waitMs = 0,
    exclude: readonly string[] = [],
  ): Promise<string> {
    return this.withRoom(spec, placement, waitMs, exclude, (candidates, policy) =>
      this.#vms.ledger.claimRoom({
        vm: spec.name,
        memoryMiB: spec.memoryMiB,
        vcpus: spec.vcpus,
        diskGiB: totalDiskGiB(spec),
        policy,
        group: placement.group,
        held: true,
        candidates,
      }),
    );
  }
}
