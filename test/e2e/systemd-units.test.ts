import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { FleetClient } from "@virtfleet/fleet";
import { afterAll, describe, expect, inject, it } from "vitest";
import { freePort } from "../fixtures/redis-server.js";
import { repo, until } from "./harness.js";

const run = promisify(execFile);
const UNITS = path.join(repo, "deploy/systemd");
const INSTALLED = "/opt/virtfleet";

/** A unit file's [Service] settings (a key given twice keeps every value, in order). */
async function service(unit: string): Promise<Map<string, string[]>> {
  const text = await readFile(path.join(UNITS, unit), "utf8");
  const out = new Map<string, string[]>();
  let section = "";
  for (const line of text.split("\n").map((l) => l.trim())) {
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("[")) {
      section = line;
      continue;
    }
    if (section !== "[Service]") continue;
    const eq = line.indexOf("=");
    const key = line.slice(0, eq);
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

/** KEY=VALUE lines of an environment file, as systemd reads them (comments and blanks skipped). */
async function envFile(file: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const line of (await readFile(path.join(UNITS, file), "utf8")).split("\n")) {
    const l = line.trim();
    if (l === "" || l.startsWith("#")) continue;
    const eq = l.indexOf("=");
    out[l.slice(0, eq)] = l.slice(eq + 1);
  }
  return out;
}

/**
 * Starts a unit's ExecStart as systemd would, with its example environment file and Environment=
 * lines (`%d`: the credentials directory), from this checkout instead of /opt/virtfleet. `local`
 * points it at the test's Redis, ports and directories.
 */
async function startUnit(unit: string, envExample: string, credentials: string, local: Record<string, string>) {
  const s = await service(unit);
  const [exec, ...args] = (s.get("ExecStart")?.[0] ?? "").split(" ").map((a) => a.replace(INSTALLED, repo));
  const fromUnit = Object.fromEntries(
    (s.get("Environment") ?? []).map((e) => {
      const eq = e.indexOf("=");
      return [e.slice(0, eq), e.slice(eq + 1).replace("%d", credentials)];
    }),
  );
  const child: ChildProcess = spawn(exec as string, args, {
    env: { PATH: process.env.PATH ?? "", ...(await envFile(envExample)), ...fromUnit, ...local },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  // A clean stop re-raises the stop signal (what systemd counts as success for it). "close": the
  // process has exited and all its output has been read.
  const exited = new Promise<string>((resolve) =>
    child.once("close", (code, signal) => resolve(signal ?? `exit ${code}`)),
  );
  return { child, exited, stdout: () => stdout, stderr: () => stderr, settings: s };
}

const redisUrl = inject("redisUrl");
const prefix = `test-${randomUUID()}`;
const scratch = await mkdtemp(path.join(os.tmpdir(), "vft-units-"));

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe("the systemd units in deploy/systemd", () => {
  it("pass systemd-analyze verify without a single complaint", async () => {
    const { stdout, stderr } = await run("systemd-analyze", [
      "verify",
      path.join(UNITS, "virtfleet-worker.service"),
      path.join(UNITS, "virtfleet-api.service"),
    ]);
    expect(`${stdout}${stderr}`).toBe("");
  });

  it("the worker's command line and example configuration start a worker that joins the fleet and stops cleanly on the unit's stop signal, within its stop timeout", async () => {
    const hostId = `unit-${randomUUID().slice(0, 8)}`;
    const storage = path.join(scratch, "vms");
    await mkdir(storage, { recursive: true, mode: 0o755 });
    const w = await startUnit("virtfleet-worker.service", "worker.env.example", scratch, {
      REDIS_URL: redisUrl,
      VIRTFLEET_PREFIX: prefix,
      VIRTFLEET_HOST_ID: hostId,
      VIRTFLEET_STORAGE_DIR: storage,
      VIRTFLEET_IMAGE_DIR: inject("imageDir"),
      VIRTFLEET_VIRT_TYPE: "qemu",
    });
    const client = new FleetClient({ redisUrl, prefix });
    try {
      const host = await until("the worker's heartbeat", async () => {
        const h = await client.hosts.get(hostId);
        return h?.up ? h : undefined;
      });
      // The example's labels and concurrency reached the worker.
      expect(host.status.labels).toEqual({ rack: "r1" });
      expect(host.status.concurrency).toBe(4);
      const stopSec = Number(w.settings.get("TimeoutStopSec")?.[0]);
      const shutdownSec = Number((await envFile("worker.env.example")).VIRTFLEET_SHUTDOWN_TIMEOUT_MS) / 1000;
      // Past the shutdown timeout the worker rolls back and hands jobs back, 30 s at most, before
      // systemd would kill it.
      expect(stopSec).toBeGreaterThan(shutdownSec + 30);
      expect(w.settings.get("KillMode")).toEqual(["mixed"]);
      w.child.kill(w.settings.get("KillSignal")?.[0] as NodeJS.Signals);
      const code = await Promise.race([w.exited, new Promise((r) => setTimeout(() => r("timeout"), stopSec * 1000))]);
      expect({ code, stderr: w.stderr() }).toEqual({ code: "SIGTERM", stderr: "" });
      // Stopped, not killed: it said so and took its host out of the fleet at once.
      expect((await client.hosts.get(hostId))?.up).toBe(false);
      expect(w.stdout()).toContain('"msg":"worker stopped"');
    } finally {
      w.child.kill("SIGKILL");
      await client.close();
    }
  });

  it("the API's command line, example configuration and credential start an API that answers and stops cleanly", async () => {
    const credentials = path.join(scratch, "credentials");
    await mkdir(credentials, { recursive: true });
    await writeFile(
      path.join(credentials, "tokens.json"),
      JSON.stringify([{ id: "ops", token: "unit-test-token-0123456789", scopes: ["hosts:read"], tenant: "ops" }]),
    );
    const port = await freePort();
    const api = await startUnit("virtfleet-api.service", "api.env.example", credentials, {
      REDIS_URL: redisUrl,
      VIRTFLEET_PREFIX: prefix,
      VIRTFLEET_API_PORT: String(port),
    });
    try {
      await until("the API to answer", async () => {
        const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        return res?.status === 200 ? true : undefined;
      });
      // The tokens came from the credential the unit hands over.
      const hosts = await fetch(`http://127.0.0.1:${port}/v1/hosts`, {
        headers: { authorization: "Bearer unit-test-token-0123456789" },
      });
      expect(hosts.status).toBe(200);
      const refused = await fetch(`http://127.0.0.1:${port}/v1/hosts`, { headers: { authorization: "Bearer nope" } });
      expect(refused.status).toBe(401);
      api.child.kill("SIGTERM");
      expect(await api.exited).toBe("SIGTERM");
      expect(api.stdout()).toContain('"msg":"stopped"');
    } finally {
      api.child.kill("SIGKILL");
    }
  });
});
