import { z } from "zod";
import { toValidationError } from "./errors.js";
import { Token } from "./names.js";
import type { NetworkSpec } from "./vm-spec.js";

/**
 * Network allow-lists: which bridges and libvirt networks a host offers (`VIRTFLEET_ALLOWED_NETWORKS`)
 * or a tenant may use (`"networks"` of a token). One entry is `NAME` or `bridge=NAME` (a host bridge)
 * or `network=NAME` (a libvirt network), e.g. `["br-lab", "network=lab"]`. No list at all means any
 * network; an empty list means none (only `--network none`); `*` allows any network (for trusted
 * tokens).
 */

/** One allowed network, parsed. */
export interface NetworkRef {
  /** `any`: the `*` entry. */
  type: NetworkSpec["type"] | "any";
  name: string;
}

/** A parsed allow-list: no duplicates, in the order given. */
export type NetworkAllowList = readonly NetworkRef[];

/** One entry of an allow-list, as written: `NAME`, `bridge=NAME`, `network=NAME` or `*`. */
export const NetworkAllowEntry = z.string().transform((raw, ctx): NetworkRef => {
  const text = raw.trim();
  if (text === "*") return { type: "any", name: "*" };
  const eq = text.indexOf("=");
  const kind = eq < 0 ? "bridge" : text.slice(0, eq).trim();
  const name = (eq < 0 ? text : text.slice(eq + 1)).trim();
  if (kind !== "bridge" && kind !== "network") {
    ctx.addIssue({ code: "custom", message: `"${raw}" is not NAME, bridge=NAME, network=NAME or *` });
    return z.NEVER;
  }
  const ok = Token.safeParse(name);
  if (!ok.success) {
    ctx.addIssue({ code: "custom", message: `"${raw}": the name ${ok.error.issues[0]?.message ?? "is invalid"}` });
    return z.NEVER;
  }
  return { type: kind, name };
});

/** The canonical text of an allowed network or a spec's NIC: `bridge=NAME` / `network=NAME`. */
export function formatNetworkRef(ref: NetworkRef | NetworkSpec): string {
  if ("name" in ref) return ref.type === "any" ? "*" : `${ref.type}=${ref.name}`;
  return ref.type === "bridge" ? `bridge=${ref.bridge}` : `network=${ref.network}`;
}

/** An allow-list in canonical text, as a host advertises it in its status: `bridge=NAME` / `network=NAME`. */
export const CanonicalNetworkEntry = z
  .string()
  .regex(/^(\*|(bridge|network)=[A-Za-z0-9][A-Za-z0-9._-]{0,63})$/, "must be bridge=NAME, network=NAME or *");

/** An allow-list entry as text, checked but kept as written (the tokens file's `networks`). */
export const NetworkAllowText = z.string().superRefine((raw, ctx) => {
  const parsed = NetworkAllowEntry.safeParse(raw);
  if (!parsed.success) ctx.addIssue({ code: "custom", message: parsed.error.issues[0]?.message ?? "invalid" });
});

/**
 * Parses allow-list entries; a bad one is a ValidationError naming `field.N`. Duplicates are dropped.
 */
export function parseNetworkAllowList(entries: readonly string[], field = "networks"): NetworkAllowList {
  const parsed = z.array(NetworkAllowEntry).safeParse(entries);
  if (!parsed.success) throw toValidationError(parsed.error, field);
  const seen = new Set<string>();
  return parsed.data.filter((ref) => {
    const key = formatNetworkRef(ref);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Whether the list allows this NIC's network. No list (undefined) allows every network. */
export function networkAllowed(list: NetworkAllowList | undefined, network: NetworkSpec): boolean {
  if (list === undefined) return true;
  const name = network.type === "bridge" ? network.bridge : network.network;
  return list.some((ref) => ref.type === "any" || (ref.type === network.type && ref.name === name));
}

/** The index of the first of `networks` the list does not allow, or undefined when it allows them all. */
export function firstDisallowedNetwork(
  list: NetworkAllowList | undefined,
  networks: readonly NetworkSpec[],
): number | undefined {
  const i = networks.findIndex((n) => !networkAllowed(list, n));
  return i < 0 ? undefined : i;
}
