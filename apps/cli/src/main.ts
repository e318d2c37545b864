#!/usr/bin/env node
import {
  DEFAULT_READY_TIMEOUT_SEC,
  HostId,
  ImageImportInput,
  isTerminal,
  JobId,
  PlacementOptions,
  parseOrThrow,
  type StreamedEvent,
  toErrorInfo,
  ValidationError,
  VirtfleetError,
  VmSpec,
} from "@virtfleet/core";
import {
  DEFAULT_RECONCILE_TIMEOUT_MS,
  type FleetClient,
  KeyPrefix,
  RedisEnv,
  redisConfigFromParsedEnv,
} from "@virtfleet/fleet";
import { Command, CommanderError, Option } from "commander";
import { z } from "zod";
import { ApiBackend } from "./api-backend.js";
import type { Backend } from "./backend.js";
import { cachedReader } from "./cloud-init-flags.js";
import { addLabCommands } from "./commands/labs.js";
import { addLeaseCommands } from "./commands/leases.js";
import { addPoolCommands } from "./commands/pools.js";
import { addTemplatesCommand } from "./commands/templates.js";
import { type CreateFlags, expandNames, flagForField, parseLabel, specFromFlags } from "./flags.js";
import { formatEvent, formatTable } from "./output.js";
import { RedisBackend } from "./redis-backend.js";
import { SpecFileError } from "./spec-file.js";
import { parseWaitReady } from "./wait-ready.js";

const CliEnv = z.object({
  ...RedisEnv.shape,
  VIRTFLEET_API_URL: z.string().url().optional(),
  VIRTFLEET_TOKEN: z.string().min(1).optional(),
  VIRTFLEET_PREFIX: KeyPrefix,
});

/** Exit codes: the contract. */
const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_BAD_INPUT = 2;

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** A whole number of seconds from a flag, or undefined when the flag is absent. */
function seconds(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new ValidationError([{ field: flag, message: "must be a whole number of seconds" }]);
  return Number(raw);
}

class Cli {
  json = false;
  #backend: Backend | undefined;

  /** Redis, or the HTTP API when VIRTFLEET_API_URL and VIRTFLEET_TOKEN are set. */
  backend(): Backend {
    if (this.#backend === undefined) {
      const parsed = CliEnv.safeParse(process.env);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new ValidationError([{ field: String(issue?.path[0] ?? "env"), message: issue?.message ?? "invalid" }]);
      }
      const env = parsed.data;
      if (env.VIRTFLEET_API_URL !== undefined) {
        if (env.VIRTFLEET_TOKEN === undefined) {
          throw new ValidationError([{ field: "VIRTFLEET_TOKEN", message: "is required with VIRTFLEET_API_URL" }]);
        }
        this.#backend = new ApiBackend(env.VIRTFLEET_API_URL, env.VIRTFLEET_TOKEN);
      } else {
        this.#backend = new RedisBackend(redisConfigFromParsedEnv(env), env.VIRTFLEET_PREFIX);
      }
    }
    return this.#backend;
  }

  /** Operator commands that only exist on Redis. */
  async fleet(what: string): Promise<FleetClient> {
    const backend = this.backend();
    if (!(backend instanceof RedisBackend)) {
      throw new VirtfleetError("INVALID_SPEC", `${what} is not offered through the API; unset VIRTFLEET_API_URL`);
    }
    await backend.ready();
    return backend.fleet;
  }

  async close(): Promise<void> {
    await this.#backend?.close();
  }

  print(line: string): void {
    process.stdout.write(`${line}\n`);
  }

  /** Follows jobs to their end, printing each event; returns the exit code. */
  async follow(jobIds: string[]): Promise<number> {
    const ends = await Promise.all(
      jobIds.map((id) => this.backend().waitJob(id, (e: StreamedEvent) => this.#show(e, jobIds.length > 1))),
    );
    return ends.every((e) => e.phase === "done") ? EXIT_OK : EXIT_FAILED;
  }

  /** Follows a batch until every job of it has ended; 0 when every one is done. */
  async followBatch(batchId: string): Promise<number> {
    const ends = new Map<string, string>();
    await this.backend().followBatch(batchId, (e) => {
      this.#show(e, true);
      if (isTerminal(e.phase)) ends.set(e.jobId, e.phase);
    });
    return [...ends.values()].every((phase) => phase === "done") ? EXIT_OK : EXIT_FAILED;
  }

  /** Prints every event of the fleet as it arrives, until SIGINT or SIGTERM (then exit 0). */
  async watchAll(): Promise<number> {
    const fleet = await this.fleet("watching every job (watch with no id)");
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      for await (const e of fleet.events({ signal: stop.signal })) this.#show(e, true);
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
    return EXIT_OK;
  }

  #show(e: StreamedEvent, withName: boolean): void {
    this.print(this.json ? JSON.stringify(e) : formatEvent(e, withName));
  }
}

function reportError(cli: Cli, error: unknown): number {
  if (error instanceof SpecFileError) {
    // The fields are inside the file, not flags: `virtfleet: -f web.yaml: memoryMiB: …`.
    if (cli.json)
      process.stdout.write(
        `${JSON.stringify({ error: { code: error.code, message: error.message, field: error.field, file: error.file, issues: error.issues } })}\n`,
      );
    for (const i of error.issues) process.stderr.write(`virtfleet: -f ${error.file}: ${i.field}: ${i.message}\n`);
    return EXIT_BAD_INPUT;
  }
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
    .option(
      "--network <opts>",
      "none | bridge=BR[,model=M][,mac=MAC] | network=NAME[,model=M][,mac=MAC] (repeatable)",
      collect,
    )
    .addOption(new Option("--virt-type <type>", "kvm or qemu (TCG)").choices(["kvm", "qemu"]))
    .option("--vm-label <key=value>", "a label on the VM (repeatable)", collect)
    .option(
      "--cloud-init <opts>",
      "user-data=FILE,meta-data=FILE,network-config=FILE,root-ssh-key=FILE,clouduser-ssh-key=FILE: a cloud-init NoCloud seed",
    )
    .option(
      "--ssh-key <file>",
      "an SSH public key file for the image's default user, via cloud-init (repeatable)",
      collect,
    )
    .option("--host <id>", "pin the VM to this host")
    .option("--label <key=value>", "only hosts with this label (repeatable)", collect)
    .option("--group <name>", "anti-affinity group: its VMs go to different hosts where possible")
    .addOption(new Option("--policy <policy>", "placement policy").choices(["spread", "pack"]).default("spread"))
    .option("--wait-capacity <sec>", "when no host has room, keep trying this long before NO_CAPACITY")
    .option("--count <n>", "create N VMs named from the --name pattern")
    .option("--wait", "wait until each VM is running, printing each phase")
    .option(
      "--wait-ready [strategy]",
      "also wait until the guest is ready: console[=PATTERN] (its serial console prints PATTERN, default " +
        "VIRTFLEET_READY; a bare PATTERN means the same), agent (its guest agent answers), ip (the agent " +
        "reports an IPv4 address) or cloud-init (cloud-init is done)",
    )
    .option(
      "--ready-timeout <sec>",
      `how long to wait for the guest to be ready (default per strategy: ${Object.entries(DEFAULT_READY_TIMEOUT_SEC)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")})`,
    )
    .option("--json", "machine-readable output (JSON lines)")
    .action(
      async (
        flags: CreateFlags & {
          host?: string;
          label?: string[];
          group?: string;
          policy: "spread" | "pack";
          waitCapacity?: string;
          count?: string;
          wait?: boolean;
          waitReady?: string | boolean;
          readyTimeout?: string;
          json?: boolean;
        },
      ) => {
        cli.json = flags.json === true;
        const count = flags.count === undefined ? undefined : Number(flags.count);
        if (count !== undefined && (!Number.isInteger(count) || count < 1 || count > 1000)) {
          throw new ValidationError([{ field: "--count", message: "must be a whole number from 1 to 1000" }]);
        }
        const readyTimeout = seconds("--ready-timeout", flags.readyTimeout);
        const waitCapacity = seconds("--wait-capacity", flags.waitCapacity);
        const names = count === undefined ? [flags.name as string] : expandNames(flags.name as string, count);
        // Build and check every spec and the placement before anything is enqueued.
        const read = cachedReader();
        const specs = names.map((name) => parseOrThrow(VmSpec, specFromFlags({ ...flags, name }, read), "spec"));
        const labels: Record<string, string> = {};
        for (const l of flags.label ?? []) parseLabel("--label", l, labels);
        parseOrThrow(
          PlacementOptions,
          {
            ...(flags.host === undefined ? {} : { host: flags.host }),
            requiredLabels: labels,
            ...(flags.group === undefined ? {} : { group: flags.group }),
            policy: flags.policy,
          },
          "placement",
        );
        const guestReady =
          flags.waitReady === undefined || flags.waitReady === false
            ? undefined
            : parseWaitReady(flags.waitReady, readyTimeout);
        const backend = cli.backend();
        // Each VM is placed on its own: one refused for room does not stop the others.
        const results = await Promise.all(
          specs.map((spec) =>
            backend
              .createVm({
                spec,
                ...(flags.host === undefined ? {} : { host: flags.host }),
                labels,
                ...(flags.group === undefined ? {} : { group: flags.group }),
                policy: flags.policy,
                ...(waitCapacity === undefined ? {} : { waitForCapacitySec: waitCapacity }),
                ...(guestReady === undefined ? {} : { guestReady }),
              })
              .then(
                (jobId) => ({ spec, jobId }),
                (error: unknown) => {
                  if (!(error instanceof VirtfleetError) || error instanceof ValidationError) throw error;
                  return { spec, error };
                },
              ),
          ),
        );
        const jobIds: string[] = [];
        let refused = 0;
        for (const r of results) {
          if ("error" in r) {
            refused++;
            const info = r.error.toInfo();
            if (cli.json) cli.print(JSON.stringify({ vm: r.spec.name, error: info }));
            process.stderr.write(`virtfleet: ${r.spec.name}: ${info.code}: ${info.message}\n`);
            continue;
          }
          jobIds.push(r.jobId);
          if (!flags.wait) {
            cli.print(cli.json ? JSON.stringify({ jobId: r.jobId, vm: r.spec.name }) : `${r.spec.name}\t${r.jobId}`);
          }
        }
        const followed = flags.wait ? await cli.follow(jobIds) : EXIT_OK;
        code = refused > 0 ? EXIT_FAILED : followed;
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
      const backend = cli.backend();
      const jobIds: string[] = [];
      for (const name of names) {
        const jobId = await backend.destroyVm(name, flags.host);
        jobIds.push(jobId);
        if (!flags.wait) cli.print(cli.json ? JSON.stringify({ jobId, vm: name }) : `${name}\t${jobId}`);
      }
      code = flags.wait ? await cli.follow(jobIds) : EXIT_OK;
    });

  program
    .command("watch")
    .description("follow jobs, or a batch, until they end; with no id, every job of the fleet until interrupted")
    .argument("[ids...]", "job ids, or one batch id (batch-…)")
    .option("--json", "machine-readable output (JSON lines)")
    .action(async (ids: string[], flags: { json?: boolean }) => {
      cli.json = flags.json === true;
      const parsed = ids.map((id, i) => parseOrThrow(JobId, id, `ids[${i}]`));
      const batches = parsed.filter((id) => id.startsWith("batch-"));
      if (batches.length > 0 && parsed.length > 1) {
        throw new ValidationError([{ field: "ids", message: "a batch id is watched alone" }]);
      }
      if (parsed.length === 0) code = await cli.watchAll();
      else if (batches.length === 1) code = await cli.followBatch(batches[0] as string);
      else code = await cli.follow(parsed);
    });

  program
    .command("cancel")
    .description("cancel jobs: a waiting one is dropped, a running one aborted and rolled back")
    .argument("<jobs...>", "job ids")
    .option("--wait", "wait until each job has ended")
    .option("--json", "machine-readable output (JSON lines)")
    .action(async (jobs: string[], flags: { wait?: boolean; json?: boolean }) => {
      cli.json = flags.json === true;
      const backend = cli.backend();
      for (const jobId of jobs) {
        const outcome = await backend.cancelJob(jobId);
        cli.print(cli.json ? JSON.stringify({ jobId, outcome }) : `${jobId}\t${outcome}`);
      }
      if (flags.wait) {
        const ends = await Promise.all(jobs.map((id) => backend.waitJob(id, () => undefined)));
        for (const e of ends) cli.print(cli.json ? JSON.stringify(e) : formatEvent(e, true));
        code = ends.every((e) => e.phase === "cancelled") ? EXIT_OK : EXIT_FAILED;
      }
    });

  const hosts = program
    .command("hosts")
    .description("the fleet's hosts, their capacity and health; drain or undrain one")
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      cli.json = flags.json === true;
      const list = await cli.backend().listHosts();
      if (cli.json) return cli.print(JSON.stringify(list));
      cli.print(
        formatTable(
          ["HOST", "STATE", "VIRT", "VCPUS USED/CAP", "MEMORY MiB USED/CAP", "DISK FREE GiB", "VMS", "LABELS"],
          list.map((h) => [
            h.hostId,
            h.up ? (h.draining ? "draining" : "up") : "down",
            h.virtTypes.join(","),
            `${h.allocated.vcpus}/${h.capacity.vcpus}`,
            `${h.allocated.memoryMiB}/${h.capacity.memoryMiB}`,
            String(h.diskFreeGiB),
            String(h.runningVms),
            Object.entries(h.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(","),
          ]),
        ),
      );
    });
  hosts
    .command("forget")
    .description("remove a host that is down from the fleet's list")
    .argument("<id>", "host id")
    .action(async (id: string) => {
      const client = await cli.fleet("hosts forget");
      const hostId = parseOrThrow(HostId, id, "host");
      const view = await client.hosts.get(hostId);
      if (view === undefined)
        throw new VirtfleetError("HOST_NOT_FOUND", `no host "${hostId}" in the fleet`, { field: "host" });
      if (view.up)
        throw new VirtfleetError("INVALID_SPEC", `host "${hostId}" is up; stop its worker first`, { field: "host" });
      await client.hosts.remove(hostId);
      cli.print(`${hostId}\tforgotten`);
    });
  hosts
    .command("reconcile")
    .description("ask the host's worker to reconcile now and report orphans; with --delete-orphans, also remove them")
    .argument("<id>", "host id")
    .option(
      "--delete-orphans",
      "remove the orphans found (only what virtfleet's metadata or marker names as this host's)",
    )
    .option("--timeout <sec>", "how long to wait for the worker's answer", String(DEFAULT_RECONCILE_TIMEOUT_MS / 1000))
    .option("--json", "machine-readable output")
    .action(async (id: string, flags: { deleteOrphans?: boolean; timeout: string; json?: boolean }) => {
      // `--json` after the host id may be taken by `hosts` itself.
      cli.json = flags.json === true || hosts.opts<{ json?: boolean }>().json === true;
      const hostId = parseOrThrow(HostId, id, "host");
      const timeoutSec = seconds("--timeout", flags.timeout) as number;
      const client = await cli.fleet("hosts reconcile");
      const view = await client.hosts.get(hostId);
      if (view === undefined)
        throw new VirtfleetError("HOST_NOT_FOUND", `no host "${hostId}" in the fleet`, { field: "host" });
      if (!view.up)
        throw new VirtfleetError("HOST_NOT_FOUND", `host "${hostId}" is down; start its worker first`, {
          field: "host",
        });
      const result = await client.hosts.requestReconcile(hostId, {
        deleteOrphans: flags.deleteOrphans === true,
        timeoutMs: timeoutSec * 1000,
      });
      if (result.error !== undefined) {
        throw new VirtfleetError("INTERNAL", `host "${hostId}" could not reconcile: ${result.error.message}`);
      }
      if (cli.json) return cli.print(JSON.stringify(result));
      const rows = [
        ...result.removed.map((o) => [o.vm, o.kind, "removed", o.reason]),
        ...result.orphans.map((o) => [o.vm, o.kind, "orphan", o.reason]),
      ];
      cli.print(formatTable(["VM", "KIND", "ACTION", "REASON"], rows));
    });
  for (const [verb, on] of [
    ["drain", true],
    ["undrain", false],
  ] as const) {
    hosts
      .command(verb)
      .description(on ? "finish what the host runs and place nothing new on it" : "place VMs on the host again")
      .argument("<id>", "host id")
      .action(async (id: string) => {
        const client = await cli.fleet(`hosts ${verb}`);
        const hostId = parseOrThrow(HostId, id, "host");
        await client.hosts.setDrained(hostId, on);
        cli.print(`${hostId}\t${on ? "draining" : "undrained"}`);
      });
  }

  const images = program
    .command("images")
    .description("the fleet's image catalogue: list, import (a URL workers pull, or a file on one host), remove");
  images
    .command("ls")
    .description("every catalogued image: format, sizes, SHA-256, source and the hosts that hold it")
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      cli.json = flags.json === true;
      const list = await cli.backend().listImages();
      if (cli.json) return cli.print(JSON.stringify(list));
      cli.print(
        formatTable(
          ["NAME", "FORMAT", "VIRTUAL GiB", "SIZE MiB", "SHA256", "SOURCE", "HOSTS"],
          list.map((i) => [
            i.name,
            i.format ?? "-",
            i.virtualSize === undefined ? "-" : (i.virtualSize / 2 ** 30).toFixed(1),
            i.size === undefined ? "-" : (i.size / 2 ** 20).toFixed(1),
            i.sha256 === undefined ? "-" : i.sha256.slice(0, 12),
            i.source.kind === "url" ? i.source.url : `${i.source.host}:${i.source.path}`,
            (i.hosts ?? []).join(","),
          ]),
        ),
      );
    });
  images
    .command("import")
    .description("catalogue an image: --url (any worker pulls it when a VM needs it) or --file with --host")
    .argument("<name>", "the image's name (what --disk backing=NAME uses)")
    .option("--url <url>", "http(s) URL workers pull the image from")
    .option("--sha256 <hex>", "the image's SHA-256; a download that does not match is refused")
    .option("--file <path>", "an image file on the host given by --host (absolute path)")
    .option("--host <id>", "the host that holds --file")
    .option("--timeout <sec>", "how long to wait for the host to checksum --file", "600")
    .option("--json", "machine-readable output")
    .action(
      async (
        name: string,
        flags: { url?: string; sha256?: string; file?: string; host?: string; timeout: string; json?: boolean },
      ) => {
        cli.json = flags.json === true || images.opts<{ json?: boolean }>().json === true;
        const input = {
          name,
          ...(flags.url === undefined ? {} : { url: flags.url }),
          ...(flags.sha256 === undefined ? {} : { sha256: flags.sha256 }),
          ...(flags.file === undefined ? {} : { file: flags.file }),
          ...(flags.host === undefined ? {} : { host: flags.host }),
        };
        const parsed = parseOrThrow(ImageImportInput, input);
        const timeoutSec = seconds("--timeout", flags.timeout) as number;
        const record = await cli.backend().importImage(parsed, timeoutSec * 1000);
        if (cli.json) return cli.print(JSON.stringify(record));
        cli.print(`${record.name}\timported${record.sha256 === undefined ? "" : `\tsha256:${record.sha256}`}`);
      },
    );
  images
    .command("rm")
    .description("take an image out of the catalogue (hosts keep the files they hold; nothing pulls it again)")
    .argument("<name>", "the image's name")
    .action(async (name: string) => {
      await cli.backend().removeImage(name);
      cli.print(`${name}\tremoved`);
    });

  program
    .command("ls")
    .description("the fleet's VMs, where they live and their state")
    .option("--host <id>", "only VMs on this host")
    .option("--label <key=value>", "only VMs with this label (repeatable)", collect)
    .option("--state <state>", "only VMs in this state (creating, running, destroying)")
    .option("--orphans", "instead, what hosts found that nothing accounts for (domains, folders), left alone")
    .option("--json", "machine-readable output")
    .action(async (flags: { host?: string; label?: string[]; state?: string; orphans?: boolean; json?: boolean }) => {
      cli.json = flags.json === true;
      if (flags.orphans) {
        const host = flags.host === undefined ? undefined : parseOrThrow(HostId, flags.host, "host");
        const client = await cli.fleet("listing orphans (ls --orphans)");
        const rows = (await client.hosts.list())
          .filter((h) => host === undefined || h.status.hostId === host)
          .flatMap((h) => h.status.orphans.map((o) => ({ host: h.status.hostId, ...o })));
        if (cli.json) return cli.print(JSON.stringify(rows));
        cli.print(
          formatTable(
            ["HOST", "VM", "KIND", "REASON"],
            rows.map((r) => [r.host, r.vm, r.kind, r.reason]),
          ),
        );
        return;
      }
      const labels: Record<string, string> = {};
      for (const l of flags.label ?? []) parseLabel("--label", l, labels);
      const vms = await cli.backend().listVms({
        ...(flags.host === undefined ? {} : { host: flags.host }),
        ...(flags.state === undefined ? {} : { state: flags.state }),
        label: labels,
      });
      if (cli.json) return cli.print(JSON.stringify(vms));
      cli.print(
        formatTable(
          ["NAME", "HOST", "STATE", "MEMORY MiB", "VCPUS", "GROUP", "JOB", "ADDRESSES"],
          vms.map((v) => [
            v.name,
            v.hostId,
            v.state,
            String(v.memoryMiB),
            String(v.vcpus),
            v.group ?? "",
            v.jobId,
            (v.addresses ?? []).join(","),
          ]),
        ),
      );
    });

  addTemplatesCommand(program, cli);
  addLabCommands(program, {
    labs: () => cli.backend().labs(),
    setJson: (json) => {
      cli.json = json;
    },
    print: (line) => cli.print(line),
    printError: (line) => process.stderr.write(`${line}\n`),
    exit: (c) => {
      code = c;
    },
  });
  addPoolCommands(program, {
    pools: () => cli.backend().pools(),
    print: (line) => cli.print(line),
    setJson: (json) => {
      cli.json = json;
    },
  });

  addLeaseCommands(program, {
    leases: () => cli.backend().leases(),
    setJson: (json) => {
      cli.json = json;
    },
    print: (line) => cli.print(line),
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
