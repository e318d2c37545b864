import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { LuaCommand } from "../redis/lua.js";
import type { PlacementPolicy } from "./policy.js";

const CLAIM = new LuaCommand(new URL("./commands/claim-room.lua", import.meta.url));
const RELEASE = new LuaCommand(new URL("./commands/release-room-3.lua", import.meta.url));
const SET_CAPACITY = new LuaCommand(new URL("./commands/set-capacity-7.lua", import.meta.url));

/** How many hosts a claim reads from a class's free-room index at a time. */
export const DEFAULT_PLACEMENT_PAGE = 8;

/** How many times a script is run again with the class it asked for (a host changing class meanwhile). */
const CLASS_RETRIES = 3;

export interface Allocation {
  capacity: { memoryMiB: number; vcpus: number };
  allocated: { memoryMiB: number; vcpus: number };
  /** Disk room in GiB: `capacityGiB` is undefined when the host publishes none (not limited by disk). */
  disk: { capacityGiB: number | undefined; allocatedGiB: number };
}

/** A claim of room (see claim-room.lua and the model, policy.ts). */
export interface RoomRequest {
  vm: string;
  memoryMiB: number;
  vcpus: number;
  diskGiB: number;
  policy: PlacementPolicy;
  group?: string | undefined;
  /** A VM holding a claim on a candidate keeps it. */
  held: boolean;
  /** ms since epoch to judge liveness by; default Redis's clock. */
  now?: number | undefined;
  /** The hosts of these eligibility classes (less `exclude`), or these hosts in order. */
  candidates: { classes: readonly string[]; exclude?: readonly string[] } | { hosts: readonly string[] };
}

/**
 * Runs a script that must be given the free-room zset of every host class it writes: with the classes
 * the caller knows, then again with the one it names (`{'class', id}`) until it needs none more.
 */
export async function withClasses<T>(
  known: readonly string[],
  run: (classes: readonly string[]) => Promise<unknown>,
  onClass?: (id: string, host: string | undefined) => void,
): Promise<T> {
  const classes = [...new Set(known)];
  for (let i = 0; ; i++) {
    const reply = await run(classes);
    if (!Array.isArray(reply) || reply[0] !== "class" || i >= CLASS_RETRIES) return reply as T;
    const id = String(reply[1]);
    onClass?.(id, reply[2] === undefined ? undefined : String(reply[2]));
    if (classes.includes(id)) return reply as T;
    classes.push(id);
  }
}

/**
 * Each host's room for VMs and what is claimed of it, kept in Redis (the placement keys, see Keys)
 * and changed only atomically, by the scripts in commands/ (their policy: includes/room.lua).
 */
export class CapacityLedger {
  readonly #redis: Redis;
  readonly #keys: Keys;
  readonly #page: number;
  /** Hosts' classes as last seen (a guess: the scripts check it). */
  readonly #classOf = new Map<string, string>();

  constructor(redis: Redis, keys: Keys, options: { page?: number } = {}) {
    this.#redis = redis;
    this.#keys = keys;
    this.#page = options.page ?? DEFAULT_PLACEMENT_PAGE;
  }

  /**
   * Written by the host's worker: the room it offers (disk in GiB; left out, as it was: a host that
   * never published one is not limited by disk). The first call moves the host's room and claims
   * from the layout before the placement index.
   */
  async setCapacity(hostId: string, memoryMiB: number, vcpus: number, diskGiB?: number): Promise<void> {
    const k = this.#keys;
    await withClasses(
      this.#known([hostId]),
      (classes) => {
        const cls = classes.at(-1);
        return SET_CAPACITY.run(
          this.#redis,
          [
            k.placementHosts(),
            k.placementClaims(),
            k.placementDrained(),
            cls === undefined ? k.placementHosts() : k.placementFree(cls),
            k.alloc(hostId),
            k.claims(hostId),
            k.drain(hostId),
          ],
          [hostId, memoryMiB, vcpus, diskGiB === undefined ? "" : Math.floor(diskGiB), cls ?? ""],
        );
      },
      (id) => this.#classOf.set(hostId, id),
    );
  }

  /** Claims room by `request` (see RoomRequest); returns the host, or undefined when none has room. */
  async claimRoom(request: RoomRequest): Promise<string | undefined> {
    const k = this.#keys;
    const c = request.candidates;
    const eligible = "classes" in c ? [...new Set(c.classes)] : [];
    const hosts = "classes" in c ? (c.exclude ?? []) : c.hosts;
    const reply = await withClasses<[string, string?]>(
      [...eligible, ...this.#known("hosts" in c ? c.hosts : [])],
      (classes) =>
        CLAIM.run(
          this.#redis,
          [
            k.placementHosts(),
            k.placementClaims(),
            k.placementAlive(),
            k.placementDrained(),
            request.group === undefined ? k.placementHosts() : k.group(request.group),
            ...classes.map((cls) => k.placementFree(cls)),
          ],
          [
            request.vm,
            request.memoryMiB,
            request.vcpus,
            Math.floor(request.diskGiB),
            request.policy,
            request.group === undefined ? "0" : "1",
            request.now ?? "",
            this.#page,
            "classes" in c ? "classes" : "list",
            request.held ? "1" : "0",
            classes.length,
            eligible.length,
            ...classes,
            ...hosts,
          ],
        ),
      (id, host) => {
        if (host !== undefined) this.#classOf.set(host, id);
      },
    );
    if (reply[0] !== "claimed") return undefined;
    return reply[1];
  }

  /**
   * Claims the VM's room on the best of `hostIds` that is up and has it (see claim-room.lua);
   * returns that host, or undefined when none has room. Default policy `order`: the first that fits.
   * A VM already holding room on one of them keeps it.
   */
  async claim(
    hostIds: readonly string[],
    vm: string,
    memoryMiB: number,
    vcpus: number,
    options: { policy?: PlacementPolicy; group?: string; diskGiB?: number } = {},
  ): Promise<string | undefined> {
    if (hostIds.length === 0) return undefined;
    return this.claimRoom({
      vm,
      memoryMiB,
      vcpus,
      diskGiB: options.diskGiB ?? 0,
      policy: options.policy ?? "order",
      group: options.group,
      held: true,
      candidates: { hosts: hostIds },
    });
  }

  /** Gives the VM's room on the host back; true if it held any. Safe to call twice. */
  async release(hostId: string, vm: string): Promise<boolean> {
    const k = this.#keys;
    const reply = await withClasses(
      this.#known([hostId]),
      (classes) => {
        const cls = classes.at(-1);
        return RELEASE.run(
          this.#redis,
          [k.placementHosts(), k.placementClaims(), cls === undefined ? k.placementHosts() : k.placementFree(cls)],
          [vm, hostId, cls ?? ""],
        );
      },
      (id) => this.#classOf.set(hostId, id),
    );
    return reply === 1;
  }

  async get(hostId: string): Promise<Allocation> {
    const f = ["capMem", "capVcpus", "capDisk", "mem", "vcpus", "disk"].map((n) => `${hostId}.${n}`);
    const [capMem, capVcpus, capDisk, mem, vcpus, disk] = await this.#redis.hmget(this.#keys.placementHosts(), ...f);
    return toAllocation({ capMem, capVcpus, capDisk, mem, vcpus, disk });
  }

  /** The VMs holding room on a host. */
  async claimants(hostId: string): Promise<string[]> {
    const all = await this.#redis.hgetall(this.#keys.placementClaims());
    return Object.entries(all)
      .filter(([, c]) => claimHost(c) === hostId)
      .map(([vm]) => vm);
  }

  /** The classes last seen of these hosts. */
  #known(hostIds: readonly string[]): string[] {
    return hostIds.flatMap((h) => {
      const cls = this.#classOf.get(h);
      return cls === undefined ? [] : [cls];
    });
  }
}

/** The host of a claim's "<host>:<mem>:<vcpus>:<disk>". */
export function claimHost(claim: string): string {
  return claim.replace(/:-?\d+:-?\d+:-?\d+$/, "");
}

type Fields = Record<"capMem" | "capVcpus" | "capDisk" | "mem" | "vcpus" | "disk", string | null | undefined>;

/** A host's allocation from its fields of the placement hosts hash. */
export function toAllocation(h: Fields): Allocation {
  return {
    capacity: { memoryMiB: Number(h.capMem ?? 0), vcpus: Number(h.capVcpus ?? 0) },
    allocated: { memoryMiB: Number(h.mem ?? 0), vcpus: Number(h.vcpus ?? 0) },
    disk: {
      capacityGiB: h.capDisk === null || h.capDisk === undefined ? undefined : Number(h.capDisk),
      allocatedGiB: Number(h.disk ?? 0),
    },
  };
}
