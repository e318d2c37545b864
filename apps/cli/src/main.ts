#!/usr/bin/env node
import {
  parseOrThrow,
  type StreamedEvent,
  toErrorInfo,
  ValidationError,
  VirtfleetError,
  VmSpec,
} from "@virtfleet/core";
import { FleetClient, type JobHandle } from "@virtfleet/queue";
import { Command, CommanderError, Option } from "commander";
import { z } from "zod";
import { type CreateFlags, expandNames, flagForField, specFromFlags } from "./flags.js";
import { formatEvent, formatTable } from "./output.js";

const CliEnv = z.object({
  REDIS_URL: z.string().url().default("redis://127.0.0.1:6379"),
  VIRTFLEET_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/)
    .default("virtfleet"),
});

/** Exit codes: the contract. */
const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_BAD_INPUT = 2;

const collect = (value: string, previous: string[] = []) => [...previous, value];

class Cli {
  json = false;
  #client: FleetClient | undefined;

  client(): FleetClient {
    if (this.#client === undefined) {
      const parsed = CliEnv.safeParse(process.env);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new ValidationError([{ field: String(issue?.path[0] ?? "env"), message: issue?.message ?? "invalid" }]);
      }
      this.#client = new FleetClient({ redisUrl: parsed.data.REDIS_URL, prefix: parsed.data.VIRTFLEET_PREFIX });
    }
    return this.#client;
  }

  async close(): Promise<void> {
    await this.#client?.close();
  }

  print(line: string): void {
    process.stdout.write(`${line}\n`);
  }

  /** Follows jobs to their end, printing each event; returns the exit code. */
  async follow(handles: JobHandle[]): Promise<number> {
    const ends = await Promise.all(
      handles.map((h) =>
        h.wait({
          onEvent: (e: StreamedEvent) => this.print(this.json ? JSON.stringify(e) : formatEvent(e, handles.length > 1)),
        }),
      ),
    );
    return ends.every((e) => e.phase === "done") ? EXIT_OK : EXIT_FAILED;
  }
}

function reportError(cli: Cli, error: unknown): number {
  if (error instanceof ValidationError) {
    const issues = error.issues.map((i) => ({ ...i, flag: flagForField(i.field) }));
    if (cli.json)
      process.stdout.write(
        `${JSON.stringify({ error: { code: error.code, message: error.message, field: issues[0]?.flag, issues } })}\n`,
      );
    for (const i of issues)
      process.stderr.write(`virtfleet: ${i.flag}${i.flag !== i.field ? ` (${i.field})` : ""}: ${i.message}\n`);
    return EXIT_BAD_INPUT;
  }
  const info = toErrorInfo(error);
  if (cli.json) process.stdout.write(`${JSON.stringify({ error: info })}\n`);
  process.stderr.write(`virtfleet: ${info.code}: ${info.message}\n`);
  return error instanceof VirtfleetError && error.code === "INVALID_SPEC" ? EXIT_BAD_INPUT : EXIT_FAILED;
}

async function main(argv: string[]): Promise<number> {
  const cli = new Cli();
  const program = new Command("virtfleet")
    .description("Provision KVM virtual machines in bulk across a fleet of hosts")
    .version("0.1.0")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  let code = EXIT_OK;

  program
    .command("create")
    .description("create VMs (virt-install's vocabulary)")
    .requiredOption("--name <name>", "VM name; with --count, a pattern like 'lab-{n}'")
    .option("--memory <MiB>", "memory in MiB")
    .option("--ram <MiB>", "alias of --memory")
    .option("--vcpus <n>", "virtual CPUs", "1")
    .option("--disk <opts>", "size=GiB[,format=raw|qcow2][,backing=IMAGE] (repeatable)", collect)
    .option("--cdrom <image>", "install from an ISO in the host's image store")
    .option("--import", "boot from the first disk, no install")
    .option("--boot <opts>", "kernel=IMAGE[,initrd=IMAGE][,kernel_args=ARGS]: direct kernel boot")
    .option("--os-variant <id>", "libosinfo OS id, e.g. debian12")
    .option("--network <opts>", "none | bridge=BR[,model=M] | network=NAME[,model=M] (repeatable)", collect)
    .addOption(new Option("--virt-type <type>", "kvm or qemu (TCG)").choices(["kvm", "qemu"]))
    .option("--vm-label <key=value>", "a label on the VM (repeatable)", collect)
    .option("--host <id>", "pin the VM to this host")
    .option("--count <n>", "create N VMs named from the --name pattern")
    .option("--wait", "wait until each VM is running, printing each phase")
    .option(
      "--wait-ready [pattern]",
      "also wait for the guest to print PATTERN on its serial console (default VIRTFLEET_READY)",
    )
    .option("--ready-timeout <sec>", "how long to wait for the guest's ready line", "120")
    .option("--json", "machine-readable output (JSON lines)")
    .action(
      async (
        flags: CreateFlags & {
          host?: string;
          count?: string;
          wait?: boolean;
          waitReady?: string | boolean;
          readyTimeout: string;
          json?: boolean;
        },
      ) => {
        cli.json = flags.json === true;
        const count = flags.count === undefined ? undefined : Number(flags.count);
        if (count !== undefined && (!Number.isInteger(count) || count < 1 || count > 1000)) {
          throw new ValidationError([{ field: "--count", message: "must be a whole number from 1 to 1000" }]);
        }
        const readyTimeout = Number(flags.readyTimeout);
        if (!Number.isInteger(readyTimeout) || readyTimeout < 1)
          throw new ValidationError([{ field: "--ready-timeout", message: "must be a whole number of seconds" }]);
        const names = count === undefined ? [flags.name as string] : expandNames(flags.name as string, count);
        // Build and check every spec before anything is enqueued.
        const specs = names.map((name) => parseOrThrow(VmSpec, specFromFlags({ ...flags, name }), "spec"));
        const client = cli.client();
        const guestReady =
          flags.waitReady === undefined
            ? undefined
            : {
                ...(typeof flags.waitReady === "string" ? { pattern: flags.waitReady } : {}),
                timeoutSec: readyTimeout,
              };
        const handles: JobHandle[] = [];
        for (const spec of specs) {
          const handle = await client.createVm(spec, {
            ...(flags.host === undefined ? {} : { host: flags.host }),
            ...(guestReady === undefined ? {} : { guestReady }),
          });
          handles.push(handle);
          if (!flags.wait)
            cli.print(cli.json ? JSON.stringify({ jobId: handle.id, vm: spec.name }) : `${spec.name}\t${handle.id}`);
        }
        code = flags.wait ? await cli.follow(handles) : EXIT_OK;
      },
    );

  program
    .command("destroy")
    .description("destroy VMs and their storage")
    .argument("<names...>", "VM names")
    .option("--host <id>", "the host, when the fleet does not know the VM")
    .option("--wait", "wait until each VM is gone, printing each phase")
    .option("--json", "machine-readable output (JSON lines)")
    .action(async (names: string[], flags: { host?: string; wait?: boolean; json?: boolean }) => {
      cli.json = flags.json === true;
      const client = cli.client();
      const handles: JobHandle[] = [];
      for (const name of names) {
        const handle = await client.destroyVm(name, flags.host === undefined ? {} : { host: flags.host });
        handles.push(handle);
        if (!flags.wait) cli.print(cli.json ? JSON.stringify({ jobId: handle.id, vm: name }) : `${name}\t${handle.id}`);
      }
      code = flags.wait ? await cli.follow(handles) : EXIT_OK;
    });

  program
    .command("watch")
    .description("follow jobs' progress until they end")
    .argument("<jobs...>", "job ids")
    .option("--json", "machine-readable output (JSON lines)")
    .action(async (jobs: string[], flags: { json?: boolean }) => {
      cli.json = flags.json === true;
      const client = cli.client();
      code = await cli.follow(jobs.map((id) => client.job(id)));
    });

  program
    .command("cancel")
    .description("cancel jobs: a waiting one is dropped, a running one aborted and rolled back")
    .argument("<jobs...>", "job ids")
    .option("--wait", "wait until each job has ended")
    .option("--json", "machine-readable output (JSON lines)")
    .action(async (jobs: string[], flags: { wait?: boolean; json?: boolean }) => {
      cli.json = flags.json === true;
      const client = cli.client();
      for (const jobId of jobs) {
        const outcome = await client.cancelJob(jobId);
        cli.print(cli.json ? JSON.stringify({ jobId, outcome }) : `${jobId}\t${outcome}`);
      }
      if (flags.wait) {
        const ends = await Promise.all(jobs.map((id) => client.job(id).wait()));
        for (const e of ends) cli.print(cli.json ? JSON.stringify(e) : formatEvent(e, true));
        code = ends.every((e) => e.phase === "cancelled") ? EXIT_OK : EXIT_FAILED;
      }
    });

  program
    .command("hosts")
    .description("the fleet's hosts, their capacity and health")
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      cli.json = flags.json === true;
      const hosts = await cli.client().hosts.list();
      if (cli.json) return cli.print(JSON.stringify(hosts.map((h) => ({ ...h.status, up: h.up }))));
      cli.print(
        formatTable(
          ["HOST", "STATE", "VIRT", "VCPUS", "MEMORY MiB", "DISK FREE GiB", "VMS", "LABELS"],
          hosts.map((h) => [
            h.status.hostId,
            h.up ? (h.status.draining ? "draining" : "up") : "down",
            h.status.defaultVirtType,
            String(h.status.vcpus.capacity),
            String(h.status.memoryMiB.capacity),
            String(h.status.diskFreeGiB),
            String(h.status.runningVms),
            Object.entries(h.status.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(","),
          ]),
        ),
      );
    });

  program
    .command("ls")
    .description("the fleet's VMs, where they live and their state")
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      cli.json = flags.json === true;
      const vms = await cli.client().vms.list();
      if (cli.json) return cli.print(JSON.stringify(vms.map(({ fingerprint: _f, ...v }) => v)));
      cli.print(
        formatTable(
          ["NAME", "HOST", "STATE", "MEMORY MiB", "VCPUS", "JOB"],
          vms.map((v) => [v.name, v.hostId, v.state, String(v.memoryMiB), String(v.vcpus), v.jobId]),
        ),
      );
    });

  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      if (
        error.code === "commander.helpDisplayed" ||
        error.code === "commander.version" ||
        error.code === "commander.help"
      )
        return EXIT_OK;
      return EXIT_BAD_INPUT;
    }
    code = reportError(cli, error);
  } finally {
    await cli.close();
  }
  return code;
}

process.exitCode = await main(process.argv);
