import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { StreamedEvent } from "@virtfleet/core";
import { FleetClient } from "@virtfleet/fleet";
import { ApiServer, TokenStore } from "@virtfleet/server";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { SEEDED_CREATE_PHASES } from "../fixtures/phases.js";
import {
  cliEnv,
  domainState,
  filesIn,
  jsonLines,
  runCli,
  startWorker,
  suiteFleet,
  tinySpec,
  virsh,
  type WorkerProcess,
} from "./harness.js";

// This file's VMs are named `ci-…`: other suites running at the same time clean up only their own (`vft-…`).
const PREFIX = "ci-";
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmNLnNNqH7F1XJSa3EhiJld54ElWMa+JBeqTbwO+xfX alice@lab";
const ROOT_KEY =
  "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBNn/VA8SjZjOCrskBFB24vYZjudG8ftbakEjhimDS0+yZ9H1EMKDaxLFe9QrotzAjljQas508yyIUhC+nfdF7GA= root@lab";
const TOKEN = "ci-token-0123456789abcdef";

const fleet = suiteFleet();
const env = cliEnv(fleet);
let worker: WorkerProcess;
let server: ApiServer;
let client: FleetClient;
let redis: Redis;
let files: string;
const qemuUid = Number(execFileSync("id", ["-u", "libvirt-qemu"]).toString().trim());

const vmName = (tag: string) => `${PREFIX}${tag}-${randomUUID().slice(0, 8)}`;

function bootFlags(): string[] {
  return [
    "--memory",
    "192",
    "--disk",
    "size=1,backing=tiny",
    "--boot",
    "kernel=tiny,initrd=tiny,kernel_args=console=ttyS0",
    "--network",
    "none",
    "--virt-type",
    "qemu",
  ];
}

async function ourDomains(): Promise<string[]> {
  return (await virsh(["list", "--all", "--name"])).stdout
    .split("\n")
    .map((s) => s.trim())
    .filter((s) => s.startsWith(PREFIX));
}

async function removeOurDomains(): Promise<void> {
  for (const d of await ourDomains()) {
    await virsh(["destroy", d]);
    await virsh(["undefine", d]);
  }
}

/** The seed ISO's volume id and its files' text, read back with xorriso. */
async function readSeed(iso: string): Promise<{ volumeId: string; files: Record<string, string> }> {
  const info = execFileSync("xorriso", ["-indev", iso, "-pvd_info"], { stdio: "pipe" }).toString();
  const volumeId = /Volume Id\s*:\s*(\S+)/.exec(info)?.[1] ?? "";
  const out = await mkdtemp(path.join(tmpdir(), "ci-seed-read-"));
  try {
    execFileSync("xorriso", ["-osirrox", "on", "-indev", iso, "-extract", "/", out], { stdio: "pipe" });
    const found: Record<string, string> = {};
    for (const f of await readdir(out)) found[f] = await readFile(path.join(out, f), "utf8");
    return { volumeId, files: found };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

/** The domain's `<disk>` elements whose source is a seed (`cidata.iso`), as XML text. */
async function seedDisks(name: string): Promise<string[]> {
  const xml = (await virsh(["dumpxml", name])).stdout;
  return [...xml.matchAll(/<disk [^>]*>[\s\S]*?<\/disk>/g)].map((m) => m[0]).filter((d) => d.includes("cidata.iso"));
}

async function jobKeys(): Promise<string[]> {
  return redis.keys(`${fleet.prefix}:job:*`);
}

beforeAll(async () => {
  files = await mkdtemp(path.join(tmpdir(), "ci-files-"));
  redis = new Redis(fleet.redisUrl);
  client = new FleetClient({ redisUrl: fleet.redisUrl, prefix: fleet.prefix });
  worker = await startWorker(fleet);
  server = new ApiServer({
    redisUrl: fleet.redisUrl,
    prefix: fleet.prefix,
    tokens: new TokenStore([{ id: "ci", token: TOKEN, scopes: ["vms:read", "vms:write"], tenant: "ci" }]),
    logger: pino({ level: "warn" }),
    port: 0,
  });
  await server.start();
});

afterAll(async () => {
  await server?.close();
  await worker?.stop();
  await client?.close();
  redis?.disconnect();
  await removeOurDomains();
  await rm(worker.storageDir, { recursive: true, force: true });
  await rm(files, { recursive: true, force: true });
});

// A test that leaves one of its domains or files behind fails.
afterEach(async () => {
  const domains = await ourDomains();
  const left = await filesIn(worker.storageDir);
  if (domains.length > 0) await removeOurDomains();
  expect({ domains, files: left }).toEqual({ domains: [], files: [] });
});

describe("cloud-init NoCloud seed", () => {
  it("create --cloud-init/--ssh-key attaches a read-only cidata ISO, the guest boots, destroy removes it", async () => {
    const name = vmName("seed");
    const userData = path.join(files, "user-data.yaml");
    await writeFile(userData, "#cloud-config\n# from the test\npackages: [htop]\n");
    const userKey = path.join(files, "alice.pub");
    await writeFile(userKey, `${KEY}\n`);
    const rootKey = path.join(files, "root.pub");
    await writeFile(rootKey, `${ROOT_KEY}\n`);

    const created = await runCli(
      [
        "create",
        "--name",
        name,
        ...bootFlags(),
        "--cloud-init",
        `user-data=${userData},root-ssh-key=${rootKey}`,
        "--ssh-key",
        userKey,
        "--wait",
        "--wait-ready",
        "--json",
      ],
      env,
    );
    expect(created.code, created.stdout + created.stderr + worker.logs()).toBe(0);
    const events = jsonLines(created.stdout);
    expect(events.map((e) => e.phase)).toEqual(["queued", ...SEEDED_CREATE_PHASES, "done"]);
    const jobId = String(events[0]?.jobId);

    // The domain has the seed as a read-only virtio disk (cloud kernels have no SATA), from the VM's folder.
    const dir = path.join(worker.storageDir, name);
    const iso = path.join(dir, "cidata.iso");
    const disks = await seedDisks(name);
    expect(disks).toHaveLength(1);
    expect(disks[0]).toMatch(/<target dev='vd[b-z]' bus='virtio'\/>/);
    expect(disks[0]).toContain(`<source file='${iso}'`);
    expect(disks[0]).toMatch(/<readonly\/>/);
    expect((await filesIn(dir)).sort()).toEqual([".virtfleet.json", "cidata.iso", "console.log", "disk0.qcow2"]);

    // QEMU's file, private.
    const info = await stat(iso);
    expect({ uid: info.uid, mode: (info.mode & 0o777).toString(8) }).toEqual({ uid: qemuUid, mode: "600" });

    // What cloud-init will read.
    const seed = await readSeed(iso);
    expect(seed.volumeId).toBe("cidata");
    expect(Object.keys(seed.files).sort()).toEqual(["meta-data", "user-data"]);
    expect(seed.files["meta-data"]).toBe(`instance-id: ${jobId}\nlocal-hostname: ${name}\n`);
    const ud = seed.files["user-data"] ?? "";
    expect(ud.split("\n")[0]).toBe("#cloud-config");
    expect(ud).toContain("# from the test");
    expect(ud).toContain("packages: [ htop ]");
    expect(ud).toContain(`ssh_authorized_keys:\n  - ${KEY}\n`);
    expect(ud).toContain(`- name: root\n    ssh_authorized_keys:\n      - ${ROOT_KEY}\n`);

    // The guest still boots to its ready line.
    expect(await readFile(path.join(dir, "console.log"), "utf8")).toContain("VIRTFLEET_READY");

    const destroyed = await runCli(["destroy", name, "--wait"], env);
    expect(destroyed.code, destroyed.stdout + destroyed.stderr).toBe(0);
    expect(await domainState(name)).toBeUndefined();
    expect(await filesIn(dir)).toEqual([]);
  });

  it("refuses bad cloud-init input with exit 2 naming the flag and field, and enqueues nothing", async () => {
    const before = await jobKeys();
    const bad = path.join(files, "bad-user-data");
    await writeFile(bad, "packages: [htop]\n");
    const badKey = path.join(files, "bad.pub");
    await writeFile(badKey, "ssh-ed25519 not-base64!\n");

    const name = vmName("bad");
    const r = await runCli(["create", "--name", name, ...bootFlags(), "--cloud-init", `user-data=${bad}`], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("virtfleet: --cloud-init user-data (spec.cloudInit.userData): must start with");

    const k = await runCli(["create", "--name", name, ...bootFlags(), "--ssh-key", badKey, "--json"], env);
    expect(k.code).toBe(2);
    expect(jsonLines(k.stdout)[0]).toMatchObject({
      error: { code: "INVALID_SPEC", field: "--ssh-key", issues: [{ field: "spec.cloudInit.sshAuthorizedKeys.0" }] },
    });

    const missing = await runCli(["create", "--name", name, ...bootFlags(), "--ssh-key", "/nonexistent.pub"], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--ssh-key: cannot read /nonexistent.pub");

    expect(await jobKeys()).toEqual(before);
    expect(await domainState(name)).toBeUndefined();
  });

  it("the API takes cloudInit: 400 naming the field for bad data; good data seeds the VM", async () => {
    const call = async (method: string, url: string, body?: unknown) => {
      const res = await fetch(server.url + url, {
        method,
        headers: {
          authorization: `Bearer ${TOKEN}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const before = await jobKeys();
    const name = vmName("api");
    const tooBig = `#!/bin/sh\n${"x".repeat(64 * 1024)}`;
    const refused = await call("POST", "/v1/vms", { spec: tinySpec(name, { cloudInit: { userData: tooBig } }) });
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ code: "INVALID_SPEC", field: "body.spec.cloudInit.userData" });
    const badMac = await call("POST", "/v1/vms", {
      spec: tinySpec(name, { networks: [{ type: "bridge", bridge: "br0", mac: "01:00:5e:00:00:01" }] }),
    });
    expect(badMac.status).toBe(400);
    expect(badMac.body).toMatchObject({ field: "body.spec.networks.0.mac" });
    expect(await jobKeys()).toEqual(before);

    const networkConfig = "version: 2\nethernets:\n  nic0:\n    match:\n      macaddress: '52:54:00:00:00:01'\n";
    const accepted = await call("POST", "/v1/vms", {
      spec: tinySpec(name, { cloudInit: { sshAuthorizedKeys: [KEY], hostname: "api-guest", networkConfig } }),
    });
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(202);
    const jobId = String(accepted.body.jobId);
    const seen: StreamedEvent[] = [];
    const end = await client.job(jobId).wait({ onEvent: (e) => seen.push(e), timeoutMs: 150_000 });
    expect(end.phase, worker.logs()).toBe("done");
    expect(seen.map((e) => e.phase)).toContain("cloudinit.seeded");
    const iso = path.join(worker.storageDir, name, "cidata.iso");
    const seed = await readSeed(iso);
    expect(seed.files).toEqual({
      "meta-data": `instance-id: ${jobId}\nlocal-hostname: ${name}\n`,
      "user-data": `#cloud-config\nhostname: api-guest\nssh_authorized_keys:\n  - ${KEY}\n`,
      "network-config": networkConfig,
    });

    const gone = await call("DELETE", `/v1/vms/${name}`);
    expect(gone.status).toBe(202);
    expect((await client.job(String(gone.body.jobId)).wait()).phase).toBe("done");
    expect(await filesIn(path.join(worker.storageDir, name))).toEqual([]);
  });
});
