import { formatNetworkRef, type NetworkSpec, networkAllowed } from "@virtfleet/core";
import type { Principal } from "./auth.js";
import { problem } from "./problem.js";

/**
 * Throws FORBIDDEN, naming the field (`<field>.<n>`), at the first network the caller's token may not
 * attach a guest to. `specs` pairs each spec's networks with the field that holds them
 * (`spec.networks`, `vms.3.networks`, `template.networks`).
 */
export function checkNetworks(p: Principal, specs: Iterable<[field: string, networks: readonly NetworkSpec[]]>): void {
  for (const [field, networks] of specs) {
    networks.forEach((n, i) => {
      if (!networkAllowed(p.networks, n))
        throw problem("FORBIDDEN", `this token may not attach guests to ${formatNetworkRef(n)}`, `${field}.${i}`);
    });
  }
}
