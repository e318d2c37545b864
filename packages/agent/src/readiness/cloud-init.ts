import { VirtfleetError } from "@virtfleet/core";
import { agentCommands, parseGuestExecReply, parseGuestExecStatus } from "@virtfleet/hypervisor";
import { pingAgent, WAITING_FOR_AGENT } from "./agent.js";
import { AGENT_TIMEOUT_SEC, type ReadinessStrategy, type ReadyContext } from "./probe.js";

/** What `cloud-init status --long` says: its status word and, for an error, its detail. */
export function parseCloudInitStatus(stdout: string): { status: string; detail: string } {
  const status = /^status:\s*(.+)$/m.exec(stdout)?.[1]?.trim() ?? "unknown";
  const detailAt = stdout.search(/^detail:\s*$/m);
  const detail =
    detailAt === -1
      ? (/^errors:\s*(.+)$/m.exec(stdout)?.[1] ?? "").trim() || stdout.trim()
      : stdout
          .slice(detailAt)
          .replace(/^detail:\s*\n/, "")
          .trim();
  return { status, detail: detail.replace(/\s*\n\s*/g, "; ").slice(0, 500) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `cloud-init status --long` in the guest through the agent; its output, or undefined when it did not end in time. */
async function cloudInitStatus(ctx: ReadyContext): Promise<string | undefined> {
  let pid: number;
  try {
    const reply = await ctx.libvirt.agentCommand(
      ctx.name,
      agentCommands.exec("cloud-init", ["status", "--long"]),
      AGENT_TIMEOUT_SEC,
      ctx.run,
    );
    pid = parseGuestExecReply(reply);
  } catch (error) {
    if (error instanceof VirtfleetError) throw error; // virsh failed: the caller looks at the domain again
    throw new VirtfleetError("GUEST_FAILED", `guest ${ctx.name}: cannot run cloud-init: ${(error as Error).message}`);
  }
  // A status (without --wait) answers at once; give it a few seconds under TCG.
  for (let i = 0; i < 20; i++) {
    const st = parseGuestExecStatus(
      await ctx.libvirt.agentCommand(ctx.name, agentCommands.execStatus(pid), AGENT_TIMEOUT_SEC, ctx.run),
    );
    if (st.exited) return st.stdout + st.stderr;
    await sleep(250);
  }
  return undefined;
}

/**
 * `cloud-init`: the agent answers and `cloud-init status` says done. Each probe asks for the
 * status without `--wait` (a waiting process would outlive a timed-out wait in the guest): `error`
 * or `disabled` fails at once with cloud-init's detail; anything else is still running.
 */
export function cloudInitStrategy(): ReadinessStrategy {
  return {
    pollMs: 2000,
    async probe(ctx) {
      const ping = await pingAgent(ctx);
      if (!ping.up) return { ready: false, stuck: `${WAITING_FOR_AGENT} (${ping.why})` };
      let out: string | undefined;
      try {
        out = await cloudInitStatus(ctx);
      } catch (error) {
        if (error instanceof VirtfleetError && (error.code === "GUEST_FAILED" || error.code === "CANCELLED"))
          throw error;
        return { ready: false, stuck: `cloud-init status unknown (${(error as Error).message.split("\n")[0]})` };
      }
      if (out === undefined) return { ready: false, stuck: "cloud-init still running: status did not answer" };
      const { status, detail } = parseCloudInitStatus(out);
      if (status === "done") return { ready: true, message: "cloud-init is done" };
      if (status === "error" || status === "disabled")
        throw new VirtfleetError("GUEST_FAILED", `guest ${ctx.name}: cloud-init status ${status}: ${detail}`);
      return { ready: false, stuck: `cloud-init still running: status ${status}` };
    },
  };
}
