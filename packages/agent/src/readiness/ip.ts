import { guestAddresses } from "./addresses.js";
import { pingAgent, WAITING_FOR_AGENT } from "./agent.js";
import type { ReadinessStrategy } from "./probe.js";

export const NO_IPV4 = "agent up, no IPv4 address on any NIC";

/** `ip`: the agent answers and the guest has an IPv4 address (the agent's report, else a DHCP lease). */
export function ipStrategy(): ReadinessStrategy {
  return {
    pollMs: 1000,
    async probe(ctx) {
      const ping = await pingAgent(ctx);
      if (!ping.up) return { ready: false, stuck: `${WAITING_FOR_AGENT} (${ping.why})` };
      const addresses = await guestAddresses(ctx);
      const v4 = addresses.filter((a) => !a.includes(":"));
      return v4.length === 0
        ? { ready: false, stuck: NO_IPV4 }
        : { ready: true, message: `guest has ${v4.join(", ")}`, addresses };
    },
  };
}
