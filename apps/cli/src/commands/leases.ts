import { Duration, LeaseId, type LeaseView, parseOrThrow } from "@virtfleet/core";
import type { Command } from "commander";
import { formatTable } from "../output.js";

/** What the `lease` commands need of the fleet (through Redis or the API). Errors are VirtfleetErrors. */
export interface LeaseBackend {
  /** NOT_FOUND when there is no such lease (or it is another tenant's). */
  get(id: string): Promise<LeaseView>;
  /** The lease then ends `byMs` from now (never past its maximum lifetime); NOT_FOUND when expired. */
  extend(id: string, byMs: number): Promise<LeaseView>;
  /** Releases it now: what it holds is removed (a claimed VM destroyed, a lab taken down). */
  release(id: string): Promise<LeaseView>;
  close(): Promise<void>;
}

/** What the commands use of the CLI. */
export interface LeaseCommandContext {
  leases(): LeaseBackend;
  setJson(json: boolean): void;
  print(line: string): void;
}

/** `in 29m 58s` / `2m ago`, from now. */
function fromNow(iso: string, now = Date.now()): string {
  const ms = Date.parse(iso) - now;
  const abs = Math.abs(ms);
  const s = Math.round(abs / 1000);
  const text =
    s >= 86_400
      ? `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`
      : s >= 3600
        ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
        : s >= 60
          ? `${Math.floor(s / 60)}m ${s % 60}s`
          : `${s}s`;
  return ms >= 0 ? `in ${text}` : `${text} ago`;
}

function table(l: LeaseView): string {
  return formatTable(
    ["ID", "KIND", "TARGET", "POOL", "EXPIRES", "MAX"],
    [[l.id, l.kind, l.target, l.pool ?? "-", `${l.expiresAt} (${fromNow(l.expiresAt)})`, l.maxExpiresAt]],
  );
}

/** `virtfleet lease show|extend|release`: the lease of a claimed VM or a lab. */
export function addLeaseCommands(program: Command, ctx: LeaseCommandContext): void {
  const lease = program
    .command("lease")
    .description("the lease of a claimed pool VM or a lab: show it, extend it, release it");
  lease
    .command("show")
    .description("what a lease holds and when it ends")
    .argument("<id>", "the lease's id (lease-…)")
    .option("--json", "machine-readable output")
    .action(async (raw: string, flags: { json?: boolean }) => {
      ctx.setJson(flags.json === true);
      const id = parseOrThrow(LeaseId, raw, "id");
      const view = await ctx.leases().get(id);
      ctx.print(flags.json === true ? JSON.stringify(view) : table(view));
    });
  lease
    .command("extend")
    .description("the lease then ends this long from now (never past its maximum lifetime)")
    .argument("<id>", "the lease's id (lease-…)")
    .argument("<by>", "a duration: 30m, 2h, 1d")
    .option("--json", "machine-readable output")
    .action(async (raw: string, by: string, flags: { json?: boolean }) => {
      ctx.setJson(flags.json === true);
      const id = parseOrThrow(LeaseId, raw, "id");
      const byMs = parseOrThrow(Duration, by, "by");
      const view = await ctx.leases().extend(id, byMs);
      ctx.print(
        flags.json === true
          ? JSON.stringify(view)
          : `${view.id}\texpires ${view.expiresAt} (${fromNow(view.expiresAt)})`,
      );
    });
  lease
    .command("release")
    .description("release a lease now: a claimed VM is destroyed, a lab taken down")
    .argument("<id>", "the lease's id (lease-…)")
    .option("--json", "machine-readable output")
    .action(async (raw: string, flags: { json?: boolean }) => {
      ctx.setJson(flags.json === true);
      const id = parseOrThrow(LeaseId, raw, "id");
      const view = await ctx.leases().release(id);
      ctx.print(flags.json === true ? JSON.stringify(view) : `${view.id}\treleased\t${view.kind} ${view.target}`);
    });
}
