import { usableAddresses } from "@virtfleet/hypervisor";
import type { ReadyContext } from "./probe.js";

/**
 * The guest's usable addresses (no loopback, no link-local; IPv4 first, no prefix length), as its
 * agent reports them, else as libvirt's DHCP leases know them. Empty when neither knows any.
 */
export async function guestAddresses(ctx: ReadyContext): Promise<string[]> {
  for (const source of ["agent", "lease"] as const) {
    const rows = await ctx.libvirt.interfaceAddresses(ctx.name, source, ctx.run).catch(() => []);
    const usable = usableAddresses(rows);
    if (usable.length > 0) return [...new Set(usable.map((a) => a.address.split("/")[0] as string))];
  }
  return [];
}
