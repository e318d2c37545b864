import { Duration, LabFile, LabName, type LabUpRequest, type LabView, parseOrThrow } from "@virtfleet/core";
import type { Command } from "commander";
import { formatTable } from "../output.js";
import { readSpecFile } from "../spec-file.js";

/** What the `lab` commands need of the fleet (through Redis or the API). Errors are VirtfleetErrors. */
export interface LabBackend {
  up(request: LabUpRequest): Promise<LabView>;
  list(): Promise<LabView[]>;
  /** NOT_FOUND when there is no such lab. */
  get(name: string): Promise<LabView>;
  /** `by`: a duration such as `1h`. */
  extend(name: string, by: string): Promise<LabView>;
  down(name: string): Promise<LabView>;
  close(): Promise<void>;
}

/** What the commands use of the CLI. */
export interface LabCommandContext {
  labs(): LabBackend;
  setJson(json: boolean): void;
  print(line: string): void;
  printError(line: string): void;
  /** The command's exit code. */
  exit(code: number): void;
}

/** How often `--wait` reads the lab again. */
export const LAB_WAIT_POLL_MS = 1000;

const EXIT_OK = 0;
const EXIT_FAILED = 1;

/** `web-1  done  h1` lines for what changed since the last look, and state changes. */
class Progress {
  readonly #seen = new Map<string, string>();
  #state: string | undefined;

  lines(view: LabView): string[] {
    const out: string[] = [];
    for (const vm of view.vms) {
      const key = `${vm.phase}|${vm.host ?? ""}`;
      if (this.#seen.get(vm.name) === key) continue;
      this.#seen.set(vm.name, key);
      const error = vm.error === undefined ? "" : `  ${vm.error.code}: ${vm.error.message}`;
      out.push(`${view.name}  ${vm.name.padEnd(24)} ${vm.phase.padEnd(16)} ${vm.host ?? ""}${error}`.trimEnd());
    }
    const state = view.rolledBack ? `${view.state} (rolled back)` : view.state;
    if (state !== this.#state) {
      const line = `${view.name}  lab ${state}${view.reason === undefined ? "" : `: ${view.reason}`}`;
      // The first state heads the list; a later one follows the VMs that led to it.
      if (this.#state === undefined) out.unshift(line);
      else out.push(line);
      this.#state = state;
    }
    return out;
  }
}

/** Reads the lab until `done` says so, printing progress (not with --json); the last view. */
async function follow(
  ctx: LabCommandContext,
  json: boolean,
  name: string,
  first: LabView,
  done: (v: LabView) => boolean,
): Promise<LabView> {
  const progress = new Progress();
  let view = first;
  for (;;) {
    if (!json) for (const line of progress.lines(view)) ctx.print(line);
    if (done(view)) return view;
    await new Promise((r) => setTimeout(r, LAB_WAIT_POLL_MS));
    view = await ctx.labs().get(name);
  }
}

function summary(v: LabView): string[] {
  return [
    v.name,
    v.rolledBack ? "failed (rolled back)" : v.state,
    String(v.vms.length),
    String(v.vms.filter((vm) => vm.phase === "done").length),
    v.expiresAt,
    v.reason ?? "",
  ];
}

const SUMMARY = ["NAME", "STATE", "VMS", "READY", "EXPIRES", "REASON"];

function vmTable(v: LabView): string {
  return formatTable(
    ["VM", "TEMPLATE", "PHASE", "HOST", "ADDRESSES", "ERROR"],
    v.vms.map((vm) => [
      vm.name,
      `${vm.template}@${vm.templateVersion}`,
      vm.phase,
      vm.host ?? "",
      vm.addresses.join(","),
      vm.error === undefined ? "" : `${vm.error.code}: ${vm.error.message}`,
    ]),
  );
}

/** A lab that will not become ready: failed, or taken down. */
function settled(v: LabView): boolean {
  return v.state !== "creating";
}

/** Adds `virtfleet lab up|ls|show|extend|down`. */
export function addLabCommands(program: Command, ctx: LabCommandContext): void {
  const lab = program.command("lab").description("labs: several VMs from templates, made and removed as one");

  lab
    .command("up")
    .description("make a lab from a lab file (YAML or JSON: vms: [{name, template, count}], labels)")
    .requiredOption("-f, --file <file>", "the lab file")
    .requiredOption("--name <name>", "the lab's name (its VMs are <name>-<vm>-<n>)")
    .option("--ttl <duration>", "the lab's lease (e.g. 30m, 2h); default 2h")
    .option("--max-lifetime <duration>", "extend never goes past this, from now; default 24h")
    .option("--wait", "print progress until the lab is ready (exit 0) or failed (exit 1)")
    .option("--json", "machine-readable output (the lab)")
    .action(
      async (flags: {
        file: string;
        name: string;
        ttl?: string;
        maxLifetime?: string;
        wait?: boolean;
        json?: boolean;
      }) => {
        const json = flags.json === true;
        ctx.setJson(json);
        const name = parseOrThrow(LabName, flags.name, "--name");
        if (flags.ttl !== undefined) parseOrThrow(Duration, flags.ttl, "--ttl");
        if (flags.maxLifetime !== undefined) parseOrThrow(Duration, flags.maxLifetime, "--max-lifetime");
        const file = readSpecFile(flags.file, LabFile, "lab");
        let view = await ctx.labs().up({
          name,
          lab: file,
          ...(flags.ttl === undefined ? {} : { ttl: flags.ttl }),
          ...(flags.maxLifetime === undefined ? {} : { maxLifetime: flags.maxLifetime }),
        });
        if (flags.wait) view = await follow(ctx, json, name, view, settled);
        else if (!json) ctx.print(formatTable(SUMMARY, [summary(view)]));
        if (json) ctx.print(JSON.stringify(view));
        if (view.state === "failed" || (flags.wait && view.state !== "ready")) {
          ctx.printError(`virtfleet: lab ${name} ${view.state}${view.reason === undefined ? "" : `: ${view.reason}`}`);
          ctx.exit(EXIT_FAILED);
        } else ctx.exit(EXIT_OK);
      },
    );

  lab
    .command("ls")
    .description("every lab: state, VMs, when its lease ends")
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      ctx.setJson(flags.json === true);
      const labs = await ctx.labs().list();
      ctx.print(flags.json ? JSON.stringify(labs) : formatTable(SUMMARY, labs.map(summary)));
    });

  lab
    .command("show")
    .description("a lab: its state and each VM's phase, host and addresses")
    .argument("<name>", "the lab")
    .option("--json", "machine-readable output")
    .action(async (nameInput: string, flags: { json?: boolean }) => {
      ctx.setJson(flags.json === true);
      const name = parseOrThrow(LabName, nameInput, "name");
      const v = await ctx.labs().get(name);
      if (flags.json) return ctx.print(JSON.stringify(v));
      ctx.print(`lab      ${v.name}`);
      ctx.print(`state    ${v.rolledBack ? "failed (rolled back)" : v.state}`);
      if (v.reason !== undefined) ctx.print(`reason   ${v.reason}`);
      ctx.print(`expires  ${v.expiresAt}`);
      ctx.print(`lease    ${v.leaseId}`);
      if (Object.keys(v.labels).length > 0)
        ctx.print(
          `labels   ${Object.entries(v.labels)
            .map(([k, val]) => `${k}=${val}`)
            .join(",")}`,
        );
      ctx.print("");
      ctx.print(vmTable(v));
    });

  lab
    .command("extend")
    .description("the lab's lease then ends this long from now (never past its maximum lifetime)")
    .argument("<name>", "the lab")
    .argument("<duration>", "e.g. 30m, 1h")
    .option("--json", "machine-readable output")
    .action(async (nameInput: string, by: string, flags: { json?: boolean }) => {
      ctx.setJson(flags.json === true);
      const name = parseOrThrow(LabName, nameInput, "name");
      parseOrThrow(Duration, by, "duration");
      const v = await ctx.labs().extend(name, by);
      ctx.print(flags.json ? JSON.stringify(v) : `${v.name}\texpires ${v.expiresAt}`);
    });

  lab
    .command("down")
    .description("destroy every VM of the lab and end its lease")
    .argument("<name>", "the lab")
    .option("--wait", "print progress until every VM is gone")
    .option("--json", "machine-readable output (the lab)")
    .action(async (nameInput: string, flags: { wait?: boolean; json?: boolean }) => {
      const json = flags.json === true;
      ctx.setJson(json);
      const name = parseOrThrow(LabName, nameInput, "name");
      let v = await ctx.labs().down(name);
      if (flags.wait) v = await follow(ctx, json, name, v, (x) => x.state === "gone" || x.rolledBack === true);
      else if (!json) ctx.print(`${v.name}\t${v.state}`);
      if (json) ctx.print(JSON.stringify(v));
    });
}
