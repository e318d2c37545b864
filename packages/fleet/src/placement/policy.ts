/**
 * The placement policy as a pure function: exactly what the claim scripts (includes/room.lua,
 * find_room) pick, kept equal by policy.model.int.test.ts. Among the candidates that fit (memory,
 * vCPUs, disk when the host publishes a disk capacity), are up, not drained and not draining: the
 * fewest VMs of the request's anti-affinity group first, then `spread`: most free memory, `pack`:
 * least free memory; then the smallest id (byte order). Candidates are the hosts
 * of the eligible classes (less those left out), or a list of hosts, where ties go to the earlier
 * one (`order`: the first that fits; over classes `order` is `spread`). A VM holding a claim on a candidate keeps it (`held`).
 */

export type PlacementPolicy = "spread" | "pack" | "order";

/** One host's placement state, as the placement keys hold it. */
export interface PlacementHost {
  id: string;
  /** Its eligibility class; undefined: not indexed yet (no heartbeat). */
  hostClass?: string | undefined;
  capMem: number;
  capVcpus: number;
  /** Undefined: not limited by disk. */
  capDisk?: number | undefined;
  mem: number;
  vcpus: number;
  disk: number;
  /** When its heartbeat expires (ms); undefined: never seen. */
  aliveUntil?: number | undefined;
  drained: boolean;
  draining: boolean;
}

export interface PlacementState {
  hosts: ReadonlyMap<string, PlacementHost>;
  /** vm → the host it holds room on. */
  claims: ReadonlyMap<string, string>;
  /** The request's anti-affinity group: vm → host. */
  group?: ReadonlyMap<string, string> | undefined;
}

export interface PlacementRequest {
  vm: string;
  memoryMiB: number;
  vcpus: number;
  diskGiB: number;
  policy: PlacementPolicy;
  /** A VM holding a claim on a candidate keeps it. */
  held: boolean;
  now: number;
  candidates: { classes: readonly string[]; exclude?: readonly string[] } | { hosts: readonly string[] };
}

/** Byte order of two ids (as Redis orders sorted-set members of equal score). */
export function compareIds(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Fits, is up, not drained, not draining. */
export function usable(h: PlacementHost, r: Omit<PlacementRequest, "candidates">): boolean {
  return (
    !h.draining &&
    !h.drained &&
    h.aliveUntil !== undefined &&
    h.aliveUntil > r.now &&
    h.mem + r.memoryMiB <= h.capMem &&
    h.vcpus + r.vcpus <= h.capVcpus &&
    (h.capDisk === undefined || h.disk + r.diskGiB <= h.capDisk)
  );
}

/** Negative when `a` is the better host (`pa`/`pb`: places in a given list, 0 in classes mode). */
export function compareHosts(
  policy: PlacementPolicy,
  a: PlacementHost,
  pa: number,
  b: PlacementHost,
  pb: number,
): number {
  if (policy !== "order") {
    const fa = a.capMem - a.mem;
    const fb = b.capMem - b.mem;
    if (fa !== fb) return policy === "pack" ? fa - fb : fb - fa;
  }
  if (pa !== pb) return pa - pb;
  return compareIds(a.id, b.id);
}

/** The host the claim scripts pick for the request, or undefined when none can take it. */
export function pickHost(state: PlacementState, r: PlacementRequest): string | undefined {
  const counts = new Map<string, number>();
  for (const h of state.group?.values() ?? []) counts.set(h, (counts.get(h) ?? 0) + 1);
  const list = "hosts" in r.candidates ? r.candidates.hosts : undefined;
  // `order` ranks only a given list; over classes it is `spread`.
  const policy = list === undefined && r.policy === "order" ? "spread" : r.policy;
  const pos = new Map<string, number>();
  list?.forEach((h, i) => {
    if (!pos.has(h)) pos.set(h, i + 1);
  });
  const classes = "classes" in r.candidates ? new Set(r.candidates.classes) : new Set<string>();
  const exclude = new Set("exclude" in r.candidates ? (r.candidates.exclude ?? []) : []);
  const isCandidate = (id: string): boolean => {
    if (list !== undefined) return pos.has(id);
    const cls = state.hosts.get(id)?.hostClass;
    return !exclude.has(id) && cls !== undefined && classes.has(cls);
  };
  if (r.held) {
    const holder = state.claims.get(r.vm);
    if (holder !== undefined && isCandidate(holder)) return holder;
  }
  let best: { host: PlacementHost; count: number; pos: number } | undefined;
  for (const host of state.hosts.values()) {
    if (!isCandidate(host.id) || !usable(host, r)) continue;
    const count = counts.get(host.id) ?? 0;
    const p = pos.get(host.id) ?? 0;
    if (
      best === undefined ||
      count < best.count ||
      (count === best.count && compareHosts(policy, host, p, best.host, best.pos) < 0)
    ) {
      best = { host, count, pos: p };
    }
  }
  return best?.host.id;
}
