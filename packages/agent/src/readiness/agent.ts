import { VirtfleetError } from "@virtfleet/core";
import { agentCommands, parseAgentReply } from "@virtfleet/hypervisor";
import { AGENT_TIMEOUT_SEC, type ReadinessStrategy, type ReadyContext } from "./probe.js";

export const WAITING_FOR_AGENT = "waiting for the guest agent";

/** Whether the guest agent answers `guest-ping`; when not, why (virsh's words). */
export async function pingAgent(ctx: ReadyContext): Promise<{ up: true } | { up: false; why: string }> {
  try {
    parseAgentReply(await ctx.libvirt.agentCommand(ctx.name, agentCommands.ping(), AGENT_TIMEOUT_SEC, ctx.run));
    return { up: true };
  } catch (error) {
    if (error instanceof VirtfleetError && error.code === "CANCELLED") throw error;
    const detail = error instanceof VirtfleetError ? (error.stderr ?? error.message) : (error as Error).message;
    return {
      up: false,
      why:
        detail
          .trim()
          .replace(/^error:\s*/i, "")
          .split("\n")[0] ?? "",
    };
  }
}

/** `agent`: the qemu-guest-agent in the guest answers `guest-ping`. */
export function agentStrategy(): ReadinessStrategy {
  return {
    pollMs: 1000,
    async probe(ctx) {
      const ping = await pingAgent(ctx);
      return ping.up
        ? { ready: true, message: "guest agent answers" }
        : { ready: false, stuck: `${WAITING_FOR_AGENT} (${ping.why})` };
    },
  };
}
