import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { freePort, portFree } from "../fixtures/redis-server.js";
import { domainState, killPrograms, repo, runCli, startProgram, tinySpec, until, WORKER } from "./harness.js";
import { forceCleanNamed } from "./prefixed-cleanup.js";

/**
 * deploy/redis as an operator runs it: sentinel-lab.sh starts a master, a replica and three sentinels
 * with the ACL users of deploy/redis/users.acl; the real worker, API and CLI each log in as their own
 * user and make and destroy VMs (so the ACLs are enough: Redis' ACL LOG stays empty of them), while the
 * same users are refused what is not theirs; the sentinels fail over a SIGKILLed master; --stop stops
 * everything.
 */
const run = promisify(execFile);
const LAB = path.join(repo, "deploy/redis/sentinel-lab.sh");
const API = path.join(repo, "apps/api/dist/main.js");
const imageDir = inject("imageDir");
const testRoot = inject("testRoot");
const tag = randomUUID().slice(0, 6);
const TOKEN = "hd-token-0123456789abcdef";
const NAME = "virtfleet";

let lab: string;
let base: number;
let tokensFile: string;
const conns: Redis[] = [];

const masterPort = () => base;
const replicaPort = () => base + 1;
const sentinelPorts = () => [base + 2, base + 3, base + 4];
const passwordFile = (user: string) => path.join(lab, "secrets", `${user}.password`);
const password = async (user: string) => (await readFile(passwordFile(user), "utf8")).trim();

function labSh(...args: string[]) {
  return run("bash", [LAB, "--dir", lab, "--port", String(base), ...args], { timeout: 90_000 });
}

/** A connection as ACL user `user` (no retries: a refused command or login is the answer). */
async function as(user: string | undefined, port = masterPort()): Promise<Redis> {
  const r = new Redis({
    host: "127.0.0.1",
    port,
    ...(user === undefined ? {} : { username: user, password: await password(user) }),
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableReadyCheck: false,
    retryStrategy: () => null,
  });
  r.on("error", () => undefined);
  conns.push(r);
  return r;
}

async function pidAlive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) [ZX]/.test(stat);
  } catch {
    return false;
  }
}

beforeAll(async () => {
  lab = await mkdtemp(path.join(os.tmpdir(), "hd-sentinel-lab-"));
  base = await freePort(6); // five, and a second replica's
  tokensFile = path.join(lab, "tokens.json");
  await writeFile(
    tokensFile,
    JSON.stringify([{ id: "hd", token: TOKEN, scopes: ["vms:read", "vms:write", "hosts:read"], tenant: "hd" }]),
  );
}, 30_000);

afterAll(async () => {
  for (const c of conns) c.disconnect();
  killPrograms();
  await forceCleanNamed(`hd-${tag}`, [path.join(testRoot, "vms", `hd-${tag}`)]);
  await labSh("--stop").catch(() => undefined);
  await rm(lab, { recursive: true, force: true });
}, 60_000);

/** How component `user` reaches the lab's master (straight, without Sentinel). */
/** The KEY=VALUE lines of an env file (comments and blank lines skipped). */
function envFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m !== null) out[m[1] as string] = m[2] as string;
  }
  return out;
}

function redisEnv(user: "virtfleet-worker" | "virtfleet-api" | "virtfleet-cli"): Record<string, string> {
  return {
    REDIS_URL: `redis://127.0.0.1:${masterPort()}`,
    REDIS_USERNAME: user,
    REDIS_PASSWORD_FILE: passwordFile(user),
    VIRTFLEET_PREFIX: NAME,
  };
}

async function api(method: string, url: string, apiBase: string, body?: unknown) {
  const res = await fetch(apiBase + url, {
    method,
    headers: {
      authorization: `Bearer ${TOKEN}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
}

/** A job's last phase, read from the API's event stream (the JobEventHub, its blocking XREAD). */
async function lastPhase(apiBase: string, jobId: string): Promise<string | undefined> {
  const res = await fetch(`${apiBase}/v1/jobs/${jobId}/events`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const text = await res.text();
  const phases = [...text.matchAll(/^data: (.*)$/gm)].map(
    (m) => (JSON.parse(m[1] ?? "{}") as { phase?: string }).phase,
  );
  return phases.at(-1);
}

/** ACL LOG entries (as the admin) of virtfleet's three component users. */
async function deniedFor(users: readonly string[]): Promise<string[]> {
  const admin = await as("virtfleet-admin");
  const entries = (await admin.call("ACL", "LOG", "256")) as unknown[][];
  const out: string[] = [];
  for (const e of entries) {
    const fields = new Map<string, unknown>();
    for (let i = 0; i + 1 < e.length; i += 2) fields.set(String(e[i]), e[i + 1]);
    if (users.includes(String(fields.get("username"))))
      out.push(`${fields.get("username")}: ${fields.get("reason")} ${fields.get("object")}`);
  }
  return out;
}

describe("deploy/redis with sentinel-lab.sh", () => {
  it("starts a master, a replica and three sentinels with the ACL users; each sentinel names the master", async () => {
    const { stdout } = await labSh();
    expect(stdout).toContain(`REDIS_SENTINELS=127.0.0.1:${base + 2},127.0.0.1:${base + 3},127.0.0.1:${base + 4}`);
    expect(stdout).toContain("REDIS_SENTINEL_USERNAME=virtfleet-client");
    expect(stdout).toContain(`REDIS_PASSWORD_FILE=${passwordFile("virtfleet-api")}`);
    for (const port of sentinelPorts()) {
      const s = await as("virtfleet-client", port);
      expect(await s.call("SENTINEL", "get-master-addr-by-name", NAME)).toEqual(["127.0.0.1", String(masterPort())]);
    }
    const status = (await labSh("--status")).stdout;
    expect(status).toMatch(new RegExp(`^master +127\\.0\\.0\\.1:${masterPort()} +pid \\d+ +role master$`, "m"));
    expect(status).toMatch(new RegExp(`^replica +127\\.0\\.0\\.1:${replicaPort()} +pid \\d+ +role slave$`, "m"));
    const users = (await (await as("virtfleet-admin")).call("ACL", "USERS")) as string[];
    expect([...users].sort()).toEqual(
      [
        "default",
        "virtfleet-admin",
        "virtfleet-api",
        "virtfleet-cli",
        "virtfleet-controller",
        "virtfleet-replica",
        "virtfleet-sentinel",
        "virtfleet-worker",
      ].sort(),
    );
    // Nothing but the ACL users may log in; the rendered ACL file holds hashes, not passwords.
    await expect((await as(undefined)).ping()).rejects.toThrow(/NOAUTH/);
    const acl = await readFile(path.join(lab, "users.acl"), "utf8");
    expect(acl).not.toContain(await password("virtfleet-worker"));
    expect(acl).toMatch(/^user default off /m);
  });

  it("a worker, the API and the CLI, each as its own ACL user, make and destroy VMs; Redis denied none of them anything", async () => {
    const hostId = `hd-${tag}-w`;
    const worker = startProgram(WORKER, {
      ...redisEnv("virtfleet-worker"),
      VIRTFLEET_HOST_ID: hostId,
      VIRTFLEET_STORAGE_DIR: path.join(testRoot, "vms", `hd-${tag}`, hostId),
      VIRTFLEET_IMAGE_DIR: imageDir,
      VIRTFLEET_VIRT_TYPE: "qemu",
      VIRTFLEET_HEARTBEAT_MS: "1000",
      VIRTFLEET_SHUTDOWN_TIMEOUT_MS: "5000",
    });
    const apiPort = await freePort();
    const apiServer = startProgram(API, {
      ...redisEnv("virtfleet-api"),
      VIRTFLEET_API_PORT: String(apiPort),
      VIRTFLEET_API_TOKENS_FILE: tokensFile,
    });
    const apiBase = `http://127.0.0.1:${apiPort}`;
    const cli = redisEnv("virtfleet-cli");
    try {
      await until(
        "the worker's host in `virtfleet hosts`",
        async () => {
          const hosts = await runCli(["hosts", "--json"], cli, 30_000);
          return hosts.code === 0 && hosts.stdout.includes(hostId) ? true : undefined;
        },
        60_000,
      );
      await until("the API", async () =>
        (await fetch(`${apiBase}/readyz`).catch(() => undefined))?.ok ? true : undefined,
      );

      // The CLI (operator) creates one VM, the API another.
      const viaCli = `hd-${tag}-cli`;
      const boot = ["--memory", "128", "--disk", "size=1,backing=tiny", "--boot", "kernel=tiny,initrd=tiny"];
      const create = await runCli(["create", "--name", viaCli, ...boot, "--network", "none", "--wait"], cli);
      expect({ code: create.code, stderr: create.stderr }).toEqual({ code: 0, stderr: "" });
      const viaApi = `hd-${tag}-api`;
      const created = await api("POST", "/v1/vms", apiBase, { spec: tinySpec(viaApi) });
      expect(created.status).toBe(202);
      expect(await lastPhase(apiBase, String(created.body.jobId))).toBe("done");
      expect(await domainState(viaCli)).toBe("running");
      expect(await domainState(viaApi)).toBe("running");
      const listed = await api("GET", "/v1/vms", apiBase);
      // The API lists its tenant's VMs (the CLI's has none).
      expect((listed.body as unknown as { name: string }[]).map((v) => v.name)).toEqual([viaApi]);
      // The operator's read of the catalogue and a job's events (watch) work as virtfleet-cli too.
      expect((await runCli(["images", "ls", "--json"], cli, 30_000)).code).toBe(0);
      const watched = await runCli(["watch", String(created.body.jobId), "--json"], cli, 60_000);
      expect({ code: watched.code, stderr: watched.stderr }).toEqual({ code: 0, stderr: "" });
      expect(watched.stdout).toContain('"done"');

      const destroy = await runCli(["destroy", viaCli, "--wait"], cli);
      expect({ code: destroy.code, stderr: destroy.stderr }).toEqual({ code: 0, stderr: "" });
      const deleted = await api("DELETE", `/v1/vms/${viaApi}`, apiBase);
      expect(deleted.status).toBe(202);
      expect(await lastPhase(apiBase, String(deleted.body.jobId))).toBe("done");
      expect(await domainState(viaCli)).toBeUndefined();
      expect(await domainState(viaApi)).toBeUndefined();
    } finally {
      await worker.stop();
      await apiServer.stop();
    }
    expect(worker.output()).toContain('"msg":"worker stopped"');
    expect(worker.output()).not.toMatch(/NOPERM/);
    expect(apiServer.output()).not.toMatch(/NOPERM/);
    expect(await deniedFor(["virtfleet-worker", "virtfleet-api", "virtfleet-cli"])).toEqual([]);
  });

  it("each user is refused what is not its own: no FLUSHALL or CONFIG for the API, no other prefix for the worker", async () => {
    const apiUser = await as("virtfleet-api");
    await expect(apiUser.flushall()).rejects.toThrow(/NOPERM.*flushall/);
    await expect(apiUser.call("CONFIG", "GET", "maxmemory-policy")).rejects.toThrow(/NOPERM.*config\|get/);
    await expect(apiUser.call("CONFIG", "SET", "appendonly", "no")).rejects.toThrow(/NOPERM/);
    const workerUser = await as("virtfleet-worker");
    await expect(workerUser.set("other:x", "1")).rejects.toThrow(/NOPERM.*keys/);
    await expect(workerUser.get("bull:host.x:meta")).rejects.toThrow(/NOPERM.*keys/);
    // A script is held to the same key patterns.
    await expect(workerUser.eval("return redis.call('GET', KEYS[1])", 1, "other:x")).rejects.toThrow(
      /NOPERM|No permissions/,
    );
    await expect(workerUser.publish("other:cancel:x", "1")).rejects.toThrow(/NOPERM.*channel/);
    await expect(workerUser.set(`${NAME}:hd-probe`, "1")).resolves.toBe("OK");
    const cliUser = await as("virtfleet-cli");
    await expect(cliUser.call("KEYS", "*")).rejects.toThrow(/NOPERM/);
    await expect(cliUser.call("SHUTDOWN")).rejects.toThrow(/NOPERM/);
    // A sentinel's client user may only ask for the master, not reconfigure the sentinel.
    const client = await as("virtfleet-client", sentinelPorts()[0]);
    await expect(client.call("SENTINEL", "FAILOVER", NAME)).rejects.toThrow(/NOPERM/);
    // The refusals are in the ACL LOG: the empty log of the flow above was not an empty log by accident.
    expect((await deniedFor(["virtfleet-api", "virtfleet-worker"])).length).toBeGreaterThanOrEqual(4);
  });

  let viaSentinel: Redis;
  const currentMaster = async () => {
    const sentinel = await as("virtfleet-client", sentinelPorts()[1]);
    return Number(((await sentinel.call("SENTINEL", "get-master-addr-by-name", NAME)) as string[])[1]);
  };

  it("through the sentinels (ioredis' Sentinel client, as virtfleet-client), a SIGKILLed master is replaced by the replica, which refuses writes (min-replicas-to-write 1) until the old master is back as its replica", async () => {
    viaSentinel = new Redis({
      sentinels: sentinelPorts().map((port) => ({ host: "127.0.0.1", port })),
      name: NAME,
      sentinelUsername: "virtfleet-client",
      sentinelPassword: await password("virtfleet-client"),
      username: "virtfleet-api",
      password: await password("virtfleet-api"),
      maxRetriesPerRequest: null,
    });
    viaSentinel.on("error", () => undefined);
    conns.push(viaSentinel);
    expect(await viaSentinel.set(`${NAME}:hd-before`, "1")).toBe("OK");
    expect(await viaSentinel.wait(1, 5000)).toBe(1);

    const masterPid = Number((await readFile(path.join(lab, "master", "redis.pid"), "utf8")).trim());
    process.kill(masterPid, "SIGKILL");
    await until("the sentinels to promote the replica", async () =>
      (await currentMaster()) === replicaPort() ? true : undefined,
    );
    await until("the replica to be a master", async () =>
      ((await (await as("virtfleet-api", replicaPort())).call("ROLE")) as string[])[0] === "master" ? true : undefined,
    );
    // Alone, the new master takes no write: nothing is acknowledged that no replica holds.
    await expect((await as("virtfleet-api", replicaPort())).set(`${NAME}:hd-alone`, "1")).rejects.toThrow(/NOREPLICAS/);
    // The old master comes back (sentinel-lab.sh starts what is not running) and the sentinels make it
    // a replica of the new one; then writes are accepted again.
    await labSh();
    await until("the old master to become a replica", async () =>
      (await labSh("--status").catch(() => ({ stdout: "" }))).stdout.match(/^master .*role slave$/m) ? true : undefined,
    );
    await until("a write through the sentinels", async () =>
      (await viaSentinel.set(`${NAME}:hd-after`, "1").catch(() => undefined)) === "OK" ? true : undefined,
    );
    expect(await viaSentinel.get(`${NAME}:hd-before`)).toBe("1");
  });

  it("with --replicas 2 a second failover needs nothing restarted: writes go on at once; --stop stops every process", async () => {
    await labSh("--replicas", "2");
    const status = (await labSh("--status")).stdout;
    expect(status).toMatch(new RegExp(`^replica-2 +127\\.0\\.0\\.1:${base + 5} +pid \\d+ +role slave$`, "m"));
    const before = await currentMaster();
    expect(before).toBe(replicaPort());
    process.kill(Number((await readFile(path.join(lab, "replica", "redis.pid"), "utf8")).trim()), "SIGKILL");
    await until("the sentinels to promote another replica", async () => {
      const now = await currentMaster();
      return now !== before ? now : undefined;
    });
    expect([masterPort(), base + 5]).toContain(await currentMaster());
    await until("a write through the sentinels", async () =>
      (await viaSentinel.set(`${NAME}:hd-second`, "1").catch(() => undefined)) === "OK" ? true : undefined,
    );
    expect(await viaSentinel.get(`${NAME}:hd-after`)).toBe("1");
    viaSentinel.disconnect();

    const dirs = ["master", "replica", "replica-2", "sentinel-1", "sentinel-2", "sentinel-3"];
    const pids = await Promise.all(
      dirs.map(async (d) => Number((await readFile(path.join(lab, d, "redis.pid"), "utf8").catch(() => "0")).trim())),
    );
    // A replica that has just resynced writes its initial AOF, and Redis refuses a SIGTERM meanwhile
    // ("Writing initial AOF, can't exit") and does not try again. Here one is made to write it slowly
    // (rdb-key-save-delay, µs per key) while --stop runs: --stop must still stop it.
    const follower = (await currentMaster()) === masterPort() ? base + 5 : masterPort();
    const admin = await as("virtfleet-admin", follower);
    const keys = Math.max(1, await admin.dbsize());
    await admin.config("SET", "rdb-key-save-delay", String(Math.ceil(3_000_000 / keys)));
    await admin.config("SET", "appendonly", "no");
    await admin.config("SET", "appendonly", "yes");
    expect(await admin.info("persistence")).toMatch(/^aof_rewrite_in_progress:1/m);
    admin.disconnect();
    await labSh("--stop");
    for (const pid of pids.filter((p) => p > 0)) expect(await pidAlive(pid)).toBe(false);
    for (const port of [masterPort(), replicaPort(), ...sentinelPorts(), base + 5])
      expect(await portFree(port)).toBe(true);
    await expect(labSh("--status")).rejects.toMatchObject({ stdout: expect.stringMatching(/master .*not running/) });
  });
});

describe("deploy/redis with sentinel-lab.sh --tls", () => {
  let tlsLab: string;
  let tlsBase: number;
  const tlsSh = (...args: string[]) =>
    run("bash", [LAB, "--dir", tlsLab, "--port", String(tlsBase), ...args], { timeout: 90_000 });

  afterAll(async () => {
    if (tlsLab === undefined) return;
    await tlsSh("--stop").catch(() => undefined);
    await rm(tlsLab, { recursive: true, force: true });
  }, 60_000);

  it("TLS everywhere: plain connections are refused; the CLI (rediss://, REDIS_TLS_CA_FILE), the CLI through its Sentinel env file (REDIS_SENTINEL_TLS=1) and a Sentinel client over TLS work and exit; the sentinels fail over over TLS", async () => {
    tlsLab = await mkdtemp(path.join(os.tmpdir(), "hd-sentinel-tls-"));
    tlsBase = await freePort(6);
    const { stdout } = await tlsSh("--tls");
    const ca = path.join(tlsLab, "tls", "ca.crt");
    expect(stdout).toContain("REDIS_SENTINEL_TLS=1");
    expect(stdout).toContain(`REDIS_TLS_CA_FILE=${ca}`);
    expect(stdout).toContain(`REDIS_URL=rediss://localhost:${tlsBase}`);
    const pw = async (user: string) =>
      (await readFile(path.join(tlsLab, "secrets", `${user}.password`), "utf8")).trim();

    // No plain text on any port.
    const plain = new Redis({
      port: tlsBase,
      host: "127.0.0.1",
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    plain.on("error", () => undefined);
    conns.push(plain);
    await expect(plain.connect().then(() => plain.ping())).rejects.toThrow();

    const cli = await runCli(
      ["hosts", "--json"],
      {
        REDIS_URL: `rediss://localhost:${tlsBase}`,
        REDIS_TLS_CA_FILE: ca,
        REDIS_USERNAME: "virtfleet-cli",
        REDIS_PASSWORD_FILE: path.join(tlsLab, "secrets", "virtfleet-cli.password"),
        VIRTFLEET_PREFIX: NAME,
      },
      30_000,
    );
    expect({ code: cli.code, stderr: cli.stderr }).toEqual({ code: 0, stderr: "" });

    // The CLI through virtfleet's own Sentinel path, with the env file the lab wrote for it
    // (REDIS_SENTINELS, REDIS_SENTINEL_TLS=1, REDIS_TLS_CA_FILE, the client and cli users): it
    // writes (a template) and reads, before and after the failover below.
    const cliEnv = envFile(await readFile(path.join(tlsLab, "env", "cli.env"), "utf8"));
    expect(cliEnv).toMatchObject({ REDIS_SENTINEL_TLS: "1", REDIS_TLS_CA_FILE: ca, REDIS_USERNAME: "virtfleet-cli" });
    const viaEnv = async (args: string[]) => {
      const r = await runCli(args, cliEnv, 30_000);
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
      return r.stdout;
    };
    const putTemplate = async (name: string) => {
      const file = path.join(tlsLab, `${name}.json`);
      await writeFile(file, JSON.stringify({ memoryMiB: 128, vcpus: 1, disks: [{ sizeGiB: 1 }] }));
      await viaEnv(["templates", "put", name, "--file", file]);
    };
    await putTemplate("hd-tls-t1");
    expect(await viaEnv(["templates", "ls", "--json"])).toContain("hd-tls-t1");

    const caPem = await readFile(ca, "utf8");
    const viaSentinel = new Redis({
      sentinels: [2, 3, 4].map((i) => ({ host: "127.0.0.1", port: tlsBase + i })),
      name: NAME,
      sentinelUsername: "virtfleet-client",
      sentinelPassword: await pw("virtfleet-client"),
      sentinelTLS: { ca: caPem },
      enableTLSForSentinelMode: true,
      tls: { ca: caPem },
      username: "virtfleet-worker",
      password: await pw("virtfleet-worker"),
      maxRetriesPerRequest: null,
    });
    viaSentinel.on("error", () => undefined);
    conns.push(viaSentinel);
    expect(await viaSentinel.set(`${NAME}:hd-tls`, "1")).toBe("OK");
    expect(await viaSentinel.wait(1, 5000)).toBe(1);

    process.kill(Number((await readFile(path.join(tlsLab, "master", "redis.pid"), "utf8")).trim()), "SIGKILL");
    const sentinel = new Redis({
      port: tlsBase + 3,
      host: "127.0.0.1",
      username: "virtfleet-client",
      password: await pw("virtfleet-client"),
      tls: { ca: caPem },
      maxRetriesPerRequest: 0,
    });
    sentinel.on("error", () => undefined);
    conns.push(sentinel);
    await until("the sentinels to promote the replica", async () => {
      const addr = (await sentinel.call("SENTINEL", "get-master-addr-by-name", NAME)) as string[];
      return addr[1] === String(tlsBase + 1) ? true : undefined;
    });
    await tlsSh();
    await until("a write through the sentinels after the failover", async () =>
      (await viaSentinel.set(`${NAME}:hd-tls-after`, "1").catch(() => undefined)) === "OK" ? true : undefined,
    );
    expect(await viaSentinel.get(`${NAME}:hd-tls`)).toBe("1");
    // The CLI's Sentinel path finds the new master too (over TLS), and what it wrote before is there.
    await putTemplate("hd-tls-t2");
    const templates = await viaEnv(["templates", "ls", "--json"]);
    expect(templates).toContain("hd-tls-t1");
    expect(templates).toContain("hd-tls-t2");
    viaSentinel.disconnect();
    await tlsSh("--stop");
    for (const i of [0, 1, 2, 3, 4]) expect(await portFree(tlsBase + i)).toBe(true);
  });
});
