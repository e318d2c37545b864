import { VirtfleetError } from "@virtfleet/core";
import {
  type AgentCommand,
  agentCommands,
  type GuestExecStatus,
  parseGuestExecReply,
  parseGuestExecStatus,
} from "@virtfleet/hypervisor";
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

/**
 * `cloud-init`: the agent answers and `cloud-init status` says done. Each probe asks for the status
 * without `--wait` (a waiting process would outlive a timed-out wait in the guest); under TCG the
 * command itself takes seconds, so a run still going is looked at again by the next probe rather
 * than started anew. `error` or `disabled` fails at once with cloud-init's detail; anything else is
 * still running.
 */
export function cloudInitStrategy(): ReadinessStrategy {
  /** The guest pid of the `cloud-init status` run not yet seen to end. */
  let pending: number | undefined;
  let last = "not asked yet";
  const agent = (ctx: ReadyContext, command: AgentCommand) =>
    ctx.libvirt.agentCommand(ctx.name, command, AGENT_TIMEOUT_SEC, ctx.run);
  return {
    pollMs: 1000,
    async probe(ctx) {
      const ping = await pingAgent(ctx);
      if (!ping.up) return { ready: false, stuck: `${WAITING_FOR_AGENT} (${ping.why})` };
      let status: GuestExecStatus;
      try {
        if (pending === undefined) {
          let reply: string;
          try {
            reply = await agent(ctx, agentCommands.exec("cloud-init", ["status", "--long"]));
          } catch (error) {
            if (error instanceof VirtfleetError) throw error;
            throw new Error(String(error));
          }
          try {
            pending = parseGuestExecReply(reply);
          } catch (error) {
            // The agent refused (no cloud-init in the guest, guest-exec not allowed): it never will.
            throw new VirtfleetError(
              "GUEST_FAILED",
              `guest ${ctx.name}: cannot run cloud-init: ${(error as Error).message}`,
            );
          }
        }
        status = parseGuestExecStatus(await agent(ctx, agentCommands.execStatus(pending)));
      } catch (error) {
        if (error instanceof VirtfleetError && (error.code === "GUEST_FAILED" || error.code === "CANCELLED"))
          throw error;
        // The agent went away (a reboot) or the pid is gone: ask anew next time.
        pending = undefined;
        return { ready: false, stuck: `cloud-init still running: status ${last} (${firstLine(error)})` };
      }
      if (!status.exited) return { ready: false, stuck: `cloud-init still running: status ${last}` };
      pending = undefined;
      const { status: word, detail } = parseCloudInitStatus(status.stdout + status.stderr);
      if (word === "done") return { ready: true, message: "cloud-init is done" };
      if (word === "error" || word === "disabled")
        throw new VirtfleetError("GUEST_FAILED", `guest ${ctx.name}: cloud-init status ${word}: ${detail}`);
      last = word;
      return { ready: false, stuck: `cloud-init still running: status ${word}` };
    },
  };
}

function firstLine(error: unknown): string {
  const e = error as { stderr?: string; message?: string };
  return (
    (e.stderr || e.message || String(error))
      .trim()
      .replace(/^error:\s*/i, "")
      .split("\n")[0] ?? ""
  );
}
