import { z } from "zod";
import { ValidationError } from "./errors.js";
import type { NetworkSpec } from "./vm-spec.js";

/**
 * One entry of a network allow-list (API tokens' `networks`, workers' `VIRTFLEET_ALLOWED_NETWORKS`):
 * `NAME` or `bridge=NAME` (a host bridge), `network=NAME` (a libvirt network), or `*` (any).
 */
export const NetworkAllowEntry = z
  .string()
  .regex(/^(\*|((bridge|network)=)?[A-Za-z0-9][A-Za-z0-9._-]{0,63})$/, "must be NAME, bridge=NAME, network=NAME or *");

/** A parsed allow-list. The empty list allows no network: only `--network none`. */
export interface NetworkAllowList {
  readonly any: boolean;
  readonly bridges: ReadonlySet<string>;
  readonly networks: ReadonlySet<string>;
}

/** Parses allow-list entries; a bad one is a ValidationError naming its index (under `prefix`). */
export function parseNetworkAllowList(entries: readonly string[], prefix = ""): NetworkAllowList {
  let any = false;
  const bridges = new Set<string>();
  const networks = new Set<string>();
  const issues: { field: string; message: string }[] = [];
  entries.forEach((entry, i) => {
    const parsed = NetworkAllowEntry.safeParse(entry);
    if (!parsed.success) {
      issues.push({
        field: prefix === "" ? String(i) : `${prefix}.${i}`,
        message: parsed.error.issues[0]?.message ?? "invalid",
      });
      return;
    }
    if (entry === "*") any = true;
    else if (entry.startsWith("network=")) networks.add(entry.slice("network=".length));
    else bridges.add(entry.startsWith("bridge=") ? entry.slice("bridge=".length) : entry);
  });
  if (issues.length > 0) throw new ValidationError(issues);
  return { any, bridges, networks };
}

/** True when the allow-list lets a guest use this network. */
export function networkAllowed(list: NetworkAllowList, network: NetworkSpec): boolean {
  if (list.any) return true;
  return network.type === "bridge" ? list.bridges.has(network.bridge) : list.networks.has(network.network);
}

/** A network as an allow-list entry names it: `bridge=br0`, `network=lab`. */
export function networkEntry(network: NetworkSpec): string {
  return network.type === "bridge" ? `bridge=${network.bridge}` : `network=${network.network}`;
}
