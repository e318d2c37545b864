import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { FleetClient } from "@virtfleet/fleet";
import { inject } from "vitest";

const run = promisify(execFile);
export const repo = path.resolve(import.meta.dirname, "../..");
export const CLI = path.join(repo, "apps/cli/dist/main.js");
export const WORKER = path.join(repo, "apps/worker/dist/main.js");
export const LIBVIRT_URI = "qemu:///system";
/** A virt-install in front of the real one that injects faults (see the script). */
export const FAULT_BIN = path.join(repo, "test/fixtures/fault-bin");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `virtfleet ARGS` (the built CLI) and collects its output. */
export function runCli(args: string[], env: Record<string, string>, timeoutMs = 150_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** JSON lines of a `--json` run. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export interface WorkerProcess {
  hostId: string;
  storageDir: string;
  child: ChildProcess;
  logs: () => string;
  /** SIGTERM and wait for exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface FleetEnv {
  redisUrl: string;
  prefix: string;
  imageDir: string;
  testRoot: string;
}

/** A test file's fleet: the suite's Redis with a key prefix of its own, the test guest's images, the storage root. */
export function suiteFleet(): FleetEnv {
  return {
    redisUrl: inject("redisUrl"),
    prefix: `test-${randomUUID()}`,
    imageDir: inject("imageDir"),
    testRoot: inject("testRoot"),
  };
}

/** A unique, valid VM name for a test. */
export function vmName(tag: string): string {
  return `vft-${tag}-${randomUUID().slice(0, 8)}`;
}

export function cliEnv(f: FleetEnv): Record<string, string> {
  return { REDIS_URL: f.redisUrl, VIRTFLEET_PREFIX: f.prefix };
}

export interface StartWorkerOptions {
  hostId?: string;
  env?: Record<string, string>;
  /** Put the fault-injecting virt-install first on the worker's PATH, driven by files in this folder. */
  faultDir?: string;
}

/** Starts a real `virtfleet-worker` process as one host and waits until its heartbeat is in Redis. */
export async function startWorker(f: FleetEnv, options: StartWorkerOptions = {}): Promise<WorkerProcess> {
  const hostId = options.hostId ?? `h-${randomUUID().slice(0, 8)}`;
  const storageDir = path.join(f.testRoot, "vms", `${f.prefix}-${hostId}`);
  await mkdir(storageDir, { recursive: true, mode: 0o755 });
  const child = spawn(process.execPath, [WORKER], {
    env: {
      ...process.env,
      REDIS_URL: f.redisUrl,
      VIRTFLEET_PREFIX: f.prefix,
      VIRTFLEET_HOST_ID: hostId,
      VIRTFLEET_STORAGE_DIR: storageDir,
      VIRTFLEET_IMAGE_DIR: f.imageDir,
      VIRTFLEET_VIRT_TYPE: "qemu",
      // A lost host is noticed within seconds; 1.5 s (500 ms beats) proved too tight for a loaded
      // 2-core machine booting 30 TCG guests, where a busy worker's beat can come late.
      VIRTFLEET_HEARTBEAT_MS: "1000",
      // A dead worker's jobs come back within seconds, not the production default of 30 s.
      VIRTFLEET_LOCK_MS: "3000",
      VIRTFLEET_STALLED_INTERVAL_MS: "1000",
      LOG_LEVEL: "debug",
      ...(options.faultDir === undefined
        ? {}
        : { PATH: `${FAULT_BIN}:${process.env.PATH ?? ""}`, VFT_FAULT_DIR: options.faultDir }),
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let logs = "";
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  child.stdout?.on("data", (d) => {
    logs += d;
  });
  child.stderr?.on("data", (d) => {
    logs += d;
  });
  const client = new FleetClient({ redisUrl: f.redisUrl, prefix: f.prefix });
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const view = await client.hosts.get(hostId);
      if (view?.up) break;
      if (child.exitCode !== null) throw new Error(`worker exited ${child.exitCode}:\n${logs}`);
      if (Date.now() > deadline) throw new Error(`worker ${hostId} did not register:\n${logs}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await client.close();
  }
  return {
    hostId,
    storageDir,
    child,
    exited,
    logs: () => logs,
    stop: (signal: NodeJS.Signals = "SIGTERM") =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
        void exited.then(({ code }) => resolve(code));
        child.kill(signal);
      }),
  };
}

export async function virsh(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run("virsh", ["-c", LIBVIRT_URI, ...args], {
      env: { ...process.env, LC_ALL: "C" },
    });
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; code?: number };
    return { stdout: e.stdout ?? "", stderr: e.stderr ?? "", code: typeof e.code === "number" ? e.code : 1 };
  }
}

export async function domainState(name: string): Promise<string | undefined> {
  const r = await virsh(["domstate", name]);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

/** Domains and transient pools whose names start with `vft-` (every test VM's prefix). */
export async function leftovers(): Promise<{ domains: string[]; pools: string[] }> {
  const domains = (await virsh(["list", "--all", "--name"])).stdout
    .split("\n")
    .map((s) => s.trim())
    .filter((s) => s.startsWith("vft-"));
  const pools = (await virsh(["pool-list", "--all", "--name"])).stdout
    .split("\n")
    .map((s) => s.trim())
    .filter((s) => s.includes("vft-"));
  return { domains, pools };
}

/** Removes test domains, pools and folders by force (after a failed assertion, so the next run starts clean). */
export async function forceClean(storageDirs: string[]): Promise<void> {
  const { domains, pools } = await leftovers();
  for (const d of domains) {
    await virsh(["destroy", d]);
    await virsh(["undefine", d, "--nvram"]);
  }
  for (const p of pools) {
    await virsh(["pool-destroy", p]);
    await virsh(["pool-undefine", p]);
  }
  for (const dir of storageDirs) await rm(dir, { recursive: true, force: true });
}

export async function filesIn(dir: string): Promise<string[]> {
  try {
    return await readdir(dir, { recursive: true });
  } catch {
    return [];
  }
}

/** Waits until `check` returns a value other than undefined (polling), or throws after `timeoutMs`. */
export async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The phase of a job, read from Redis. */
export async function jobPhase(client: FleetClient, jobId: string): Promise<string | undefined> {
  return (await client.log.getJob(jobId))?.phase;
}

/** True while a real virt-install (not the fault wrapper) runs for this VM. */
export async function virtInstallRunning(name: string): Promise<boolean> {
  try {
    const { stdout } = await run("pgrep", ["-f", `/usr/bin/virt-install .*--name=${name}( |$)`]);
    return stdout.trim() !== "";
  } catch {
    return false;
  }
}

/** The spec of a small test VM: the `tiny` guest, direct kernel boot, TCG, no network. */
export function tinySpec(name: string, extra: Record<string, unknown> = {}) {
  return {
    name,
    memoryMiB: 192,
    vcpus: 1,
    disks: [{ sizeGiB: 1, backing: "tiny" }],
    install: { method: "kernel", kernel: "tiny", initrd: "tiny", kernelArgs: "console=ttyS0" },
    networks: [],
    virtType: "qemu",
    ...extra,
  };
}

/** A real program (a worker or the API, by its main file) started by startProgram. */
export interface Program {
  /** Its stdout and stderr so far, together. */
  output: () => string;
  /** SIGTERM, then SIGKILL after 20 s; resolves once every line has been read. */
  stop(): Promise<void>;
}

/** Every program startProgram started (killPrograms SIGKILLs them). */
const programs: ChildProcess[] = [];

/** Starts `bin` with node, with only PATH, LOG_LEVEL=debug and `env`; its output is collected. */
export function startProgram(bin: string, env: Record<string, string>): Program {
  const child = spawn(process.execPath, [bin], {
    env: { PATH: process.env.PATH ?? "", LOG_LEVEL: "debug", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  programs.push(child);
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  return {
    output: () => output,
    stop: async () => {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await closed;
      clearTimeout(timer);
    },
  };
}

/** SIGKILLs every program startProgram started (afterAll: what a failed test left running). */
export function killPrograms(): void {
  for (const child of programs) child.kill("SIGKILL");
}
