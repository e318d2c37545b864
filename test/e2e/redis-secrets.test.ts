import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { FleetClient } from "@virtfleet/fleet";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { freePort, LocalRedis, makeTestCa } from "../fixtures/redis-server.js";
import { killPrograms, repo, runCli, startProgram, until, WORKER } from "./harness.js";
import { forceCleanNamed } from "./prefixed-cleanup.js";

/**
 * Redis with a password, ACL users and TLS, seen from the real programs (worker, API, CLI) at
 * LOG_LEVEL=debug: they connect with the right credentials, fail clearly with wrong ones, and never
 * print a password.
 */
const API = path.join(repo, "apps/api/dist/main.js");
const imageDir = inject("imageDir");
const testRoot = inject("testRoot");
const tag = randomUUID().slice(0, 6);
const secret = (what: string) => `rd-${what}-${randomBytes(9).toString("hex")}`;
const DEFAULT_PW = secret("default");
const ACL_PW = secret("acl");
const TLS_PW = secret("tls");
const WRONG_PW = secret("wrong");
const SECRETS = [DEFAULT_PW, ACL_PW, TLS_PW, WRONG_PW];
const TOKEN = "rd-token-0123456789abcdef";

let plain: LocalRedis;
let tls: LocalRedis;
let scratch: string;
let otherCaFile: string;
const files = { acl: "", tls: "", tokens: "" };

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), "vft-redis-secrets-"));
  plain = await LocalRedis.start({
    appendonly: false,
    password: DEFAULT_PW,
    users: [{ name: "rd-user", password: ACL_PW }],
  });
  tls = await LocalRedis.start({
    appendonly: false,
    tls: true,
    users: [{ name: "rd-tls", password: TLS_PW }],
    defaultUserOff: true,
  });
  otherCaFile = (await makeTestCa(scratch, "other-ca")).certFile;
  files.acl = path.join(scratch, "acl.password");
  files.tls = path.join(scratch, "tls.password");
  files.tokens = path.join(scratch, "tokens.json");
  await writeFile(files.acl, `${ACL_PW}\n`, { mode: 0o600 });
  await writeFile(files.tls, `${TLS_PW}\n`, { mode: 0o600 });
  await writeFile(files.tokens, JSON.stringify([{ id: "rd", token: TOKEN, scopes: ["hosts:read"], tenant: "rd" }]));
}, 60_000);

afterAll(async () => {
  killPrograms();
  // Whatever a failed run left: this file's domains start with rd-<tag>.
  await forceCleanNamed(`rd-${tag}`, [path.join(testRoot, "vms", `rd-${tag}`)]);
  await plain?.stop();
  await tls?.stop();
  await rm(scratch, { recursive: true, force: true });
});

function workerEnv(hostId: string, redis: Record<string, string>): Record<string, string> {
  return {
    ...redis,
    VIRTFLEET_PREFIX: `rd-${tag}`,
    VIRTFLEET_HOST_ID: hostId,
    VIRTFLEET_STORAGE_DIR: path.join(testRoot, "vms", `rd-${tag}`, hostId),
    VIRTFLEET_IMAGE_DIR: imageDir,
    VIRTFLEET_VIRT_TYPE: "qemu",
    VIRTFLEET_HEARTBEAT_MS: "1000",
    VIRTFLEET_SHUTDOWN_TIMEOUT_MS: "5000",
  };
}

async function apiEnv(redis: Record<string, string>): Promise<{ env: Record<string, string>; base: string }> {
  const port = await freePort();
  return {
    env: {
      ...redis,
      VIRTFLEET_PREFIX: `rd-${tag}`,
      VIRTFLEET_API_PORT: String(port),
      VIRTFLEET_API_TOKENS_FILE: files.tokens,
      VIRTFLEET_WEBHOOK_SECRET: "rd-webhook-secret-0123456789",
    },
    base: `http://127.0.0.1:${port}`,
  };
}

/** The answer of GET `url` once the server listens. */
async function whenUp(url: string, init?: RequestInit): Promise<Response> {
  return until(`${url} to answer`, async () => fetch(url, init).catch(() => undefined));
}

function expectNoSecret(...outputs: string[]): void {
  for (const out of outputs) for (const s of SECRETS) expect(out).not.toContain(s);
}

describe("Redis with a password or an ACL user", () => {
  it("a wrong password: the CLI exits 1 naming the problem, the worker logs it, the API's /readyz is 503, and no output holds the password", async () => {
    const redis = { REDIS_URL: `redis://rd-user:${WRONG_PW}@127.0.0.1:${plain.port}` };
    const cli = await runCli(["hosts"], { ...redis, VIRTFLEET_PREFIX: `rd-${tag}` }, 30_000);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/REDIS_UNAVAILABLE: Redis refused the credentials .*REDIS_PASSWORD/);

    const worker = startProgram(WORKER, workerEnv(`rd-${tag}-w0`, redis));
    const { env, base } = await apiEnv(redis);
    const api = startProgram(API, env);
    try {
      await until("the worker's log line", async () =>
        worker.output().includes("Redis refused the credentials") ? true : undefined,
      );
      expect((await whenUp(`${base}/readyz`)).status).toBe(503);
      // A request that needs Redis fails, and its error is logged (without the password).
      const hosts = await fetch(`${base}/v1/hosts`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(hosts.status).toBeGreaterThanOrEqual(500);
      await until("the API's log line", async () =>
        api.output().includes("Redis refused the credentials") ? true : undefined,
      );
    } finally {
      await worker.stop();
      await api.stop();
    }
    expect(worker.output()).toContain("WRONGPASS");
    expectNoSecret(cli.stdout, cli.stderr, worker.output(), api.output());
  });

  it("the right password, from REDIS_PASSWORD_FILE for an ACL user or in the URL: every program works and prints no password", async () => {
    const hostId = `rd-${tag}-w1`;
    const redis = { REDIS_URL: plain.url, REDIS_USERNAME: "rd-user", REDIS_PASSWORD_FILE: files.acl };
    const worker = startProgram(WORKER, workerEnv(hostId, redis));
    const { env, base } = await apiEnv({ REDIS_URL: `redis://:${DEFAULT_PW}@127.0.0.1:${plain.port}` });
    const api = startProgram(API, env);
    const client = new FleetClient({ redis: await plain.config("rd-user"), prefix: `rd-${tag}` });
    try {
      await until("the worker's heartbeat", async () => ((await client.hosts.get(hostId))?.up ? true : undefined));
      const cli = await runCli(["hosts", "--json"], { ...redis, VIRTFLEET_PREFIX: `rd-${tag}` }, 30_000);
      expect(cli).toMatchObject({ code: 0, stderr: "" });
      expect(cli.stdout).toContain(hostId);
      expect((await whenUp(`${base}/readyz`)).status).toBe(200);
      const hosts = await fetch(`${base}/v1/hosts`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(hosts.status).toBe(200);
      expect(JSON.stringify(await hosts.json())).toContain(hostId);
      expectNoSecret(cli.stdout, cli.stderr);
    } finally {
      await client.close();
      await worker.stop();
      await api.stop();
    }
    expect(worker.output()).toContain('"msg":"worker stopped"');
    expectNoSecret(worker.output(), api.output());
  });
});

describe("Redis over TLS (rediss://, a CA file) with an ACL user", () => {
  const tlsEnv = () => ({
    REDIS_URL: tls.url,
    REDIS_USERNAME: "rd-tls",
    REDIS_PASSWORD_FILE: files.tls,
    REDIS_TLS_CA_FILE: tls.ca?.certFile ?? "",
  });

  it("FleetClient, a worker, the API and the CLI connect; a VM is made and destroyed through it; nothing prints the password", async () => {
    const hostId = `rd-${tag}-w2`;
    const worker = startProgram(WORKER, workerEnv(hostId, tlsEnv()));
    const { env, base } = await apiEnv(tlsEnv());
    const api = startProgram(API, env);
    const client = new FleetClient({ redis: await tls.config("rd-tls"), prefix: `rd-${tag}` });
    const cliEnv = { ...tlsEnv(), VIRTFLEET_PREFIX: `rd-${tag}` };
    try {
      await client.ready();
      await until("the worker's heartbeat", async () => ((await client.hosts.get(hostId))?.up ? true : undefined));
      expect((await whenUp(`${base}/readyz`)).status).toBe(200);
      // Jobs travel over BullMQ's connections (duplicates of the first): they keep TLS and the user.
      const name = `rd-${tag}-vm`;
      const boot = ["--memory", "128", "--disk", "size=1,backing=tiny", "--boot", "kernel=tiny,initrd=tiny"];
      const create = await runCli(["create", "--name", name, ...boot, "--network", "none", "--wait"], cliEnv);
      expect({ code: create.code, stderr: create.stderr }).toEqual({ code: 0, stderr: "" });
      expect((await client.vms.get(name))?.hostId).toBe(hostId);
      const destroy = await runCli(["destroy", name, "--wait"], cliEnv);
      expect({ code: destroy.code, stderr: destroy.stderr }).toEqual({ code: 0, stderr: "" });
      expectNoSecret(create.stdout, destroy.stdout);
    } finally {
      await client.close();
      await worker.stop();
      await api.stop();
    }
    expectNoSecret(worker.output(), api.output());
  });

  it("a CA that did not sign the server's certificate fails clearly: the CLI exits 1 naming REDIS_TLS_CA_FILE, the worker logs it, FleetClient.ready() rejects", async () => {
    const wrong = { ...tlsEnv(), REDIS_TLS_CA_FILE: otherCaFile };
    const cli = await runCli(["hosts"], { ...wrong, VIRTFLEET_PREFIX: `rd-${tag}` }, 30_000);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/REDIS_UNAVAILABLE: .*TLS with Redis failed .*REDIS_TLS_CA_FILE/);

    const worker = startProgram(WORKER, workerEnv(`rd-${tag}-w3`, wrong));
    const client = new FleetClient({
      redis: { ...(await tls.config("rd-tls")), tls: { ca: await readFile(otherCaFile, "utf8") } },
      prefix: `rd-${tag}`,
    });
    try {
      await until("the worker's log line", async () =>
        worker.output().includes("TLS with Redis failed") ? true : undefined,
      );
      await expect(client.ready(2000)).rejects.toMatchObject({ code: "REDIS_UNAVAILABLE" });
    } finally {
      await client.close();
      await worker.stop();
    }
    expectNoSecret(cli.stdout, cli.stderr, worker.output());
  });
});
