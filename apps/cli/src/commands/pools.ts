import {
  type ClaimRequest,
  type ClaimResult,
  formatDuration,
  type PoolCreateRequest,
  type PoolDetail,
  type PoolRemoved,
  type PoolUpdateRequest,
  type PoolView,
  ValidationError,
  VirtfleetError,
} from "@virtfleet/core";
import { type Command, Option } from "commander";
import { formatTable } from "../output.js";

/** What the `pool` commands need of the fleet (Redis directly, or the HTTP API). */
export interface PoolBackend {
  create(request: PoolCreateRequest): Promise<PoolView>;
  update(name: string, request: PoolUpdateRequest): Promise<PoolView>;
  list(): Promise<PoolView[]>;
  show(name: string): Promise<PoolDetail>;
  remove(name: string, wait: boolean): Promise<PoolRemoved>;
  claim(name: string, request: ClaimRequest): Promise<ClaimResult>;
  /** Releases a claimed VM (destroyed, never reused); answers with its pool. */
  release(vm: string): Promise<{ vm: string; pool: string }>;
}

export interface PoolCommandsContext {
  pools(): Promise<PoolBackend>;
  print(line: string): void;
  /** `--json` was given: errors are printed as JSON too. */
  setJson(json: boolean): void;
}

/** Pool request fields → the flag (or argument) that sets them, for error messages. */
const FLAGS: Record<string, string> = {
  name: "NAME",
  template: "--template",
  minReady: "--min-ready",
  max: "--max",
  maxReadyAge: "--max-ready-age",
  refillConcurrency: "--refill-concurrency",
  idle: "--idle",
  targetReady: "--target-ready",
  claimTtl: "--claim-ttl",
  maxLifetime: "--max-lifetime",
  ttl: "--ttl",
  wait: "--wait",
  vm: "VM",
};

/** Runs `work`; a validation error names the flag rather than the request field. */
async function withFlags<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const flag = (field: string) => FLAGS[field.split(".")[0] ?? ""] ?? field;
    if (error instanceof ValidationError)
      throw new ValidationError(error.issues.map((i) => ({ field: flag(i.field), message: i.message })));
    // Through the API: the server's INVALID_SPEC names the body field.
    if (error instanceof VirtfleetError && error.code === "INVALID_SPEC" && error.field !== undefined)
      throw new ValidationError([
        { field: flag(error.field), message: error.message.replace(/^(INVALID_SPEC: )?[\w.]+: /, "") },
      ]);
    throw error;
  }
}

/** A whole number from a flag (anything else is passed on for the schema to refuse, naming the flag). */
function int(raw: string | undefined): number | string | undefined {
  if (raw === undefined) return undefined;
  return /^\d+$/.test(raw) ? Number(raw) : raw;
}

interface SettingFlags {
  template?: string;
  minReady?: string;
  max?: string;
  maxReadyAge?: string;
  refillConcurrency?: string;
  idle?: string;
  targetReady?: string;
  claimTtl?: string;
  maxLifetime?: string;
  json?: boolean;
}

/** The settings flags given, as request fields (absent flags are left out). */
function settings(f: SettingFlags): Record<string, unknown> {
  const out: Record<string, unknown> = {
    template: f.template,
    minReady: int(f.minReady),
    max: int(f.max),
    maxReadyAge: f.maxReadyAge,
    refillConcurrency: int(f.refillConcurrency),
    idle: f.idle,
    targetReady: f.targetReady,
    claimTtl: f.claimTtl,
    maxLifetime: f.maxLifetime,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
}

function settingOptions(cmd: Command, create: boolean): Command {
  const opt = (flags: string, description: string, required = false) =>
    required ? cmd.requiredOption(flags, description) : cmd.option(flags, description);
  opt("--template <name>", "the template its VMs are made from", create);
  opt("--min-ready <n>", "ready, unclaimed VMs to keep", create);
  opt("--max <n>", "VMs of the pool in all (starting, ready and claimed)", create);
  opt("--max-ready-age <duration>", "replace ready VMs older than this (default 6h)");
  opt("--refill-concurrency <n>", "VMs made at a time (default 2)");
  cmd.addOption(
    new Option("--idle <mode>", "ready VMs wait paused or running (default pause)").choices(["pause", "run"]),
  );
  cmd.addOption(
    new Option("--target-ready <mode>", "auto: more ready VMs when claims come fast (default min)").choices([
      "min",
      "auto",
    ]),
  );
  opt("--claim-ttl <duration>", "a claim's lease when the claim names none (default 30m)");
  opt("--max-lifetime <duration>", "the longest a claim's lease may be extended to (default 24h)");
  return cmd.option("--json", "machine-readable output");
}

function poolRow(p: PoolView): string[] {
  return [
    p.name,
    `${p.template}@${p.templateVersion}`,
    `${p.ready}/${p.target === p.minReady ? p.minReady : `${p.minReady} (target ${p.target})`}`,
    String(p.starting),
    String(p.claimed),
    String(p.stale),
    String(p.max),
    p.below ?? "",
  ];
}

const POOL_HEADERS = ["NAME", "TEMPLATE", "READY/MIN", "STARTING", "CLAIMED", "STALE", "MAX", "BELOW"];

/** `virtfleet pool create|ls|show|update|rm|claim|release`. */
export function addPoolCommands(program: Command, ctx: PoolCommandsContext): void {
  const pool = program.command("pool").description("warm pools: VMs kept ready (paused) to be claimed at once");

  settingOptions(
    pool.command("create").description("make a pool of a template's VMs").argument("<name>", "the pool's name"),
    true,
  ).action(async (name: string, flags: SettingFlags) => {
    ctx.setJson(flags.json === true);
    const view = await withFlags(async () =>
      (await ctx.pools()).create({ name, ...settings(flags) } as PoolCreateRequest),
    );
    if (flags.json) return ctx.print(JSON.stringify(view));
    ctx.print(
      `${view.name}\tcreated\ttemplate ${view.template}@${view.templateVersion}, min-ready ${view.minReady}, max ${view.max}`,
    );
  });

  pool
    .command("ls")
    .description("every pool: ready, starting, claimed, stale, and why one is below its minimum")
    .option("--json", "machine-readable output (a list of pools)")
    .action(async (flags: { json?: boolean }) => {
      ctx.setJson(flags.json === true);
      const pools = await (await ctx.pools()).list();
      if (flags.json) return ctx.print(JSON.stringify(pools));
      ctx.print(formatTable(POOL_HEADERS, pools.map(poolRow)));
    });

  pool
    .command("show")
    .description("a pool's settings and its VMs")
    .argument("<name>", "the pool's name")
    .option("--json", "machine-readable output")
    .action(async (name: string, flags: { json?: boolean }) => {
      ctx.setJson(flags.json === true);
      const d = await withFlags(async () => (await ctx.pools()).show(name));
      if (flags.json) return ctx.print(JSON.stringify(d));
      ctx.print(formatTable(POOL_HEADERS, [poolRow(d)]));
      ctx.print(
        `idle ${d.idle}, target-ready ${d.targetReady}, refill-concurrency ${d.refillConcurrency}, max-ready-age ${formatDuration(d.maxReadyAgeMs)}, claim-ttl ${formatDuration(d.claimTtlMs)}, max-lifetime ${formatDuration(d.maxLifetimeMs)}`,
      );
      ctx.print("");
      ctx.print(
        formatTable(
          ["VM", "STATE", "HOST", "ADDRESSES", "VERSION", "LEASE", "EXPIRES"],
          d.vms.map((v) => [
            v.name,
            v.state === "ready" && v.stale === true ? "ready (stale)" : v.state,
            v.host ?? "",
            (v.addresses ?? []).join(","),
            v.templateVersion === undefined ? "" : String(v.templateVersion),
            v.leaseId ?? "",
            v.expiresAt ?? "",
          ]),
        ),
      );
    });

  settingOptions(
    pool.command("update").description("change a pool's settings").argument("<name>", "the pool's name"),
    false,
  ).action(async (name: string, flags: SettingFlags) => {
    ctx.setJson(flags.json === true);
    const view = await withFlags(async () => (await ctx.pools()).update(name, settings(flags) as PoolUpdateRequest));
    if (flags.json) return ctx.print(JSON.stringify(view));
    ctx.print(`${view.name}\tupdated`);
  });

  pool
    .command("rm")
    .description("remove a pool and destroy all its VMs (claimed ones too)")
    .argument("<name>", "the pool's name")
    .option("--wait", "return once every VM is destroyed")
    .option("--json", "machine-readable output")
    .action(async (name: string, flags: { wait?: boolean; json?: boolean }) => {
      ctx.setJson(flags.json === true);
      const removed = await withFlags(async () => (await ctx.pools()).remove(name, flags.wait === true));
      if (flags.json) return ctx.print(JSON.stringify(removed));
      ctx.print(`${name}\tremoved\t${removed.vms.length} VM(s) ${flags.wait ? "destroyed" : "being destroyed"}`);
    });

  pool
    .command("claim")
    .description("hand over a ready VM at once (POOL_EMPTY, exit 1, when none is ready within --wait)")
    .argument("<name>", "the pool's name")
    .option("--ttl <duration>", "the claim's lease (default: the pool's claim-ttl)")
    .option("--wait <duration>", "with no VM ready, wait this long for one (default 0)")
    .option("--json", 'machine-readable output: {"vm","host","addresses","leaseId","expiresAt"}')
    .action(async (name: string, flags: { ttl?: string; wait?: string; json?: boolean }) => {
      ctx.setJson(flags.json === true);
      const request: ClaimRequest = {
        ...(flags.ttl === undefined ? {} : { ttl: flags.ttl }),
        ...(flags.wait === undefined ? {} : { wait: flags.wait }),
      };
      const r = await withFlags(async () => (await ctx.pools()).claim(name, request));
      if (flags.json)
        return ctx.print(
          JSON.stringify({
            vm: r.vm,
            host: r.host,
            addresses: r.addresses,
            leaseId: r.leaseId,
            expiresAt: r.expiresAt,
          }),
        );
      ctx.print(`vm\t${r.vm}`);
      ctx.print(`host\t${r.host}`);
      ctx.print(`addresses\t${r.addresses.join(",")}`);
      ctx.print(`lease\t${r.leaseId}`);
      ctx.print(`expires\t${r.expiresAt}`);
    });

  pool
    .command("release")
    .description("give a claimed VM back: it is destroyed (never reused) and the pool refills")
    .argument("<vm>", "the claimed VM")
    .option("--json", "machine-readable output")
    .action(async (vm: string, flags: { json?: boolean }) => {
      ctx.setJson(flags.json === true);
      const r = await withFlags(async () => (await ctx.pools()).release(vm));
      if (flags.json) return ctx.print(JSON.stringify(r));
      ctx.print(`${r.vm}\treleased\tpool ${r.pool}`);
    });
}
