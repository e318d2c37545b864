import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import type { Stats } from "node:fs";
import { copyFile, mkdir, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { FleetClient, Keys } from "@virtfleet/fleet";
import { Queue } from "bullmq";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import {
  cliEnv,
  domainState,
  type FleetEnv,
  filesIn,
  jsonLines,
  runCli,
  startWorker,
  until,
  virsh,
  type WorkerProcess,
} from "./harness.js";

const run = promisify(execFile);

// The test images live in a store of this file's own, made like a production one: root-owned 0644
// files in a 0755 folder. It holds the `tiny` guest and a qcow2 base whose file is over 2 GiB.
const testRoot = inject("testRoot");
const imageDir = path.join(testRoot, `hf-images-${randomUUID().slice(0, 8)}`);
const fleet: FleetEnv = { redisUrl: inject("redisUrl"), prefix: `test-${randomUUID()}`, imageDir, testRoot };
const env = cliEnv(fleet);
const IMAGES = ["tiny.vmlinuz", "tiny.initrd", "tiny.qcow2", "hf-big.qcow2"];
let worker: WorkerProcess;
/** The ids libvirt runs QEMU as on this host (Debian: libvirt-qemu). */
let qemu: { uid: number; gid: number };
/** Domains this file made, removed by force after each test. */
const made = new Set<string>();

function hfName(tag: string): string {
  const name = `hf-${tag}-${randomUUID().slice(0, 8)}`;
  made.add(name);
  return name;
}

/** The `tiny` guest, booted from its kernel and initrd, with a disk on the base image `backing`. */
function bootFlags(backing: string, sizeGiB = 1): string[] {
  return [
    "--memory",
    "256",
    "--disk",
    `size=${sizeGiB},backing=${backing}`,
    "--boot",
    "kernel=tiny,initrd=tiny,kernel_args=console=ttyS0",
    "--network",
    "none",
    "--virt-type",
    "qemu",
  ];
}

/** Whether `user:group` (ids, no supplementary groups) can do `test -OP path`: what QEMU could do. */
async function canAs(uid: number, gid: number, op: "-r" | "-w", file: string): Promise<boolean> {
  try {
    await run("setpriv", [`--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", "--", "test", op, file]);
    return true;
  } catch {
    return false;
  }
}

type Snapshot = Pick<Stats, "uid" | "gid" | "mode" | "size" | "mtimeMs">;
async function snapshot(): Promise<Record<string, Snapshot>> {
  const out: Record<string, Snapshot> = {};
  for (const f of IMAGES) {
    const s = await stat(path.join(imageDir, f));
    out[f] = { uid: s.uid, gid: s.gid, mode: s.mode, size: s.size, mtimeMs: s.mtimeMs };
  }
  return out;
}

beforeAll(async () => {
  const id = async (flag: string) => Number((await run("id", [flag, "libvirt-qemu"])).stdout.trim());
  // libvirt's own group for QEMU on Debian is the group named like the user.
  qemu = { uid: await id("-u"), gid: Number((await run("getent", ["group", "libvirt-qemu"])).stdout.split(":")[2]) };
  await mkdir(imageDir, { mode: 0o755 });
  for (const f of IMAGES.slice(0, 3)) await copyFile(path.join(inject("imageDir"), f), path.join(imageDir, f));
  // Sparse, but its file is 3 GiB long: more than one read of the whole file can hold.
  await run("qemu-img", [
    "create",
    "-q",
    "-f",
    "qcow2",
    "-o",
    "preallocation=metadata",
    path.join(imageDir, "hf-big.qcow2"),
    "3G",
  ]);
  for (const f of IMAGES) await run("chmod", ["0644", path.join(imageDir, f)]);
  expect((await stat(path.join(imageDir, "hf-big.qcow2"))).size).toBeGreaterThan(2 ** 31);
  worker = await startWorker(fleet);
});

afterAll(async () => {
  await worker?.stop();
  for (const name of made) {
    await virsh(["destroy", name]);
    await virsh(["undefine", name]);
  }
  if (worker !== undefined) await rm(worker.storageDir, { recursive: true, force: true });
  await rm(imageDir, { recursive: true, force: true });
});

// A test that leaves a domain or a file behind fails.
afterEach(async () => {
  const left: string[] = [];
  for (const name of made) {
    if ((await domainState(name)) !== undefined) {
      left.push(name);
      await virsh(["destroy", name]);
      await virsh(["undefine", name]);
    }
  }
  const files = await filesIn(worker.storageDir);
  await rm(worker.storageDir, { recursive: true, force: true });
  await mkdir(worker.storageDir, { recursive: true });
  expect({ left, files }).toEqual({ left: [], files: [] });
});

describe("a VM's files are private, shared images are never the guest's", () => {
  it("while a guest runs: its folder and files belong to root and QEMU only, the images stay root's and read-only", async () => {
    const before = await snapshot();
    const name = hfName("perm");
    const created = await runCli(["create", "--name", name, ...bootFlags("tiny"), "--wait", "--wait-ready"], env);
    expect(created.code, created.stdout + created.stderr + worker.logs()).toBe(0);
    expect(await domainState(name)).toBe("running");

    const dir = path.join(worker.storageDir, name);
    const disk = path.join(dir, "disk0.qcow2");
    const consoleLog = path.join(dir, "console.log");
    // The guest booted from the kernel and initrd and its disk is an overlay on tiny.qcow2.
    expect(await readFile(consoleLog, "utf8")).toContain("VIRTFLEET_READY");

    // Images: unchanged while in use (libvirt chowned none of them), readable but not writable by QEMU.
    expect(await snapshot()).toEqual(before);
    for (const f of ["tiny.vmlinuz", "tiny.initrd", "tiny.qcow2"]) {
      const file = path.join(imageDir, f);
      expect((await stat(file)).uid, f).toBe(0);
      expect(await canAs(qemu.uid, qemu.gid, "-r", file), f).toBe(true);
      expect(await canAs(qemu.uid, qemu.gid, "-w", file), f).toBe(false);
    }

    // Folder: nothing for other users; root owns it, QEMU's group may enter.
    const d = await stat(dir);
    expect({ uid: d.uid, others: d.mode & 0o007 }).toEqual({ uid: 0, others: 0 });
    // Disk: QEMU's, 0600.
    const s = await stat(disk);
    expect({ uid: s.uid, gid: s.gid, mode: s.mode & 0o777 }).toEqual({ uid: qemu.uid, gid: qemu.gid, mode: 0o600 });
    // Console log: not world-readable.
    expect((await stat(consoleLog)).mode & 0o007).toBe(0);
    // Another local user (nobody) can read neither the disk nor the console.
    expect(await canAs(65534, 65534, "-r", disk)).toBe(false);
    expect(await canAs(65534, 65534, "-r", consoleLog)).toBe(false);

    const destroyed = await runCli(["destroy", name, "--wait"], env);
    expect(destroyed.code, destroyed.stdout + destroyed.stderr).toBe(0);
    expect(await domainState(name)).toBeUndefined();
    expect(await snapshot()).toEqual(before);
  });

  it("a worker whose QEMU user is unknown does not start, and says why", async () => {
    const hostId = `hf-nouser-${randomUUID().slice(0, 8)}`;
    try {
      await expect(startWorker(fleet, { hostId, env: { VIRTFLEET_QEMU_USER: "hf-no-such-user" } })).rejects.toThrow(
        /worker exited 1:[\s\S]*no user \\"hf-no-such-user\\" on this host/,
      );
    } finally {
      await rm(path.join(testRoot, "vms", `${fleet.prefix}-${hostId}`), { recursive: true, force: true });
    }
  });

  it("an image QEMU could write (or cannot read) is refused before anything is made", async () => {
    for (const [image, mode, why] of [
      ["hf-open", "0666", "writable"],
      ["hf-secret", "0600", "not readable"],
    ] as const) {
      const file = path.join(imageDir, `${image}.qcow2`);
      await copyFile(path.join(imageDir, "tiny.qcow2"), file);
      await run("chmod", [mode, file]);
      // Placement only offers hosts that list the image: wait for the worker's next heartbeat.
      const client = new FleetClient({ redisUrl: fleet.redisUrl, prefix: fleet.prefix });
      try {
        await until(`the host lists ${image}`, async () =>
          (await client.hosts.list()).some((h) => h.up && h.status.images.includes(`${image}.qcow2`))
            ? true
            : undefined,
        );
      } finally {
        await client.close();
      }
      const name = hfName("badimg");
      const r = await runCli(["create", "--name", name, ...bootFlags(image), "--wait", "--json"], env);
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(jsonLines(r.stdout).at(-1)).toMatchObject({
        phase: "failed",
        error: { code: "IMAGE_NOT_FOUND", field: "spec.disks.0.backing", message: expect.stringContaining(why) },
      });
      expect(await domainState(name)).toBeUndefined();
      await rm(file);
    }
  });

  it("a qcow2 base whose file is over 2 GiB gives an overlay whose backing format is qcow2", async () => {
    const name = hfName("big");
    const created = await runCli(["create", "--name", name, ...bootFlags("hf-big", 4), "--wait", "--json"], env);
    expect(created.code, created.stdout + created.stderr + worker.logs()).toBe(0);
    const disk = path.join(worker.storageDir, name, "disk0.qcow2");
    const info = JSON.parse((await run("qemu-img", ["info", "--output=json", "--force-share", disk])).stdout) as Record<
      string,
      unknown
    >;
    expect(info).toMatchObject({
      format: "qcow2",
      "backing-filename": path.join(imageDir, "hf-big.qcow2"),
      "backing-filename-format": "qcow2",
      "virtual-size": 4 * 2 ** 30,
    });
    expect(jsonLines(created.stdout).at(-1)).toMatchObject({ phase: "done" });
    expect((await runCli(["destroy", name, "--wait"], env)).code).toBe(0);
  });
});

describe("a host's network allow-list (VIRTFLEET_ALLOWED_NETWORKS)", () => {
  // A host that offers only the bridge br-hf-lab and the libvirt network hf-lab (neither needs to
  // exist: a refusal never reaches virt-install).
  const lab: FleetEnv = { ...fleet, prefix: `test-${randomUUID()}` };
  let restricted: WorkerProcess;

  beforeAll(async () => {
    restricted = await startWorker(lab, { env: { VIRTFLEET_ALLOWED_NETWORKS: "br-hf-lab, network=hf-lab" } });
  });
  afterAll(async () => {
    await restricted?.stop();
    if (restricted !== undefined) await rm(restricted.storageDir, { recursive: true, force: true });
  });

  it("advertises its list in its heartbeat", async () => {
    const client = new FleetClient({ redisUrl: lab.redisUrl, prefix: lab.prefix });
    try {
      const view = await client.hosts.get(restricted.hostId);
      expect(view?.status.networks).toEqual(["bridge=br-hf-lab", "network=hf-lab"]);
    } finally {
      await client.close();
    }
  });

  it("a create naming a network the only host does not offer is refused, and nothing is enqueued", async () => {
    const keys = new Keys(lab.prefix);
    const queue = new Queue(keys.hostQueue(restricted.hostId), {
      connection: { url: lab.redisUrl },
      prefix: keys.prefix,
    });
    try {
      for (const [network, field] of [
        [["--network", "bridge=br-hf-mgmt"], "spec.networks.0"],
        [["--network", "bridge=br-hf-lab", "--network", "network=hf-storage"], "spec.networks.1"],
        [["--network", "network=br-hf-lab"], "spec.networks.0"], // a bridge's name as a libvirt network
      ] as const) {
        for (const pin of [[], ["--host", restricted.hostId]]) {
          const name = hfName("net");
          const flags = [...bootFlags("tiny").slice(0, 6), "--virt-type", "qemu", ...network, ...pin, "--json"];
          const r = await runCli(["create", "--name", name, ...flags], cliEnv(lab));
          expect(r.code, r.stdout + r.stderr).toBe(1);
          const error = (jsonLines(r.stdout)[0] as { error?: Record<string, unknown> }).error;
          expect(error).toMatchObject({ code: "FORBIDDEN", field });
          expect(String(error?.message)).toContain(network.at(-1)?.split("=")[1]);
        }
      }
      expect(await queue.getJobCountByTypes("waiting", "active", "delayed", "prioritized", "completed", "failed")).toBe(
        0,
      );
      expect(JSON.parse((await runCli(["ls", "--json"], cliEnv(lab))).stdout)).toEqual([]);
    } finally {
      await queue.close();
    }
  });

  it("the worker refuses such a job if one arrives anyway: FORBIDDEN at once, nothing made", async () => {
    const keys = new Keys(lab.prefix);
    const queue = new Queue(keys.hostQueue(restricted.hostId), {
      connection: { url: lab.redisUrl },
      prefix: keys.prefix,
    });
    const name = hfName("smuggled");
    const jobId = `hf-${randomUUID()}`;
    try {
      await queue.add(
        "create",
        {
          kind: "create",
          jobId,
          hostId: restricted.hostId,
          spec: {
            name,
            memoryMiB: 256,
            vcpus: 1,
            disks: [{ format: "qcow2", sizeGiB: 1, backing: "tiny" }],
            install: { method: "kernel", kernel: "tiny", initrd: "tiny", kernelArgs: "console=ttyS0" },
            osVariant: "generic",
            networks: [
              { type: "network", network: "hf-lab" },
              { type: "bridge", bridge: "br-hf-mgmt" },
            ],
            virtType: "qemu",
            labels: {},
          },
          requestedAt: new Date().toISOString(),
        },
        { jobId, attempts: 5, backoff: { type: "fixed", delay: 100 } },
      );
      const deadline = Date.now() + 30_000;
      let state = await queue.getJobState(jobId);
      while (state !== "failed" && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        state = await queue.getJobState(jobId);
      }
      const job = await queue.getJob(jobId);
      expect(state).toBe("failed");
      // One attempt: not retried.
      expect(job?.attemptsMade).toBe(1);
      expect(job?.failedReason).toMatch(/^FORBIDDEN: .*br-hf-mgmt/);
      expect(await domainState(name)).toBeUndefined();
      expect(await filesIn(restricted.storageDir)).toEqual([]);
      expect(restricted.logs()).not.toContain("disk.creating");
      const client = new FleetClient({ redisUrl: lab.redisUrl, prefix: lab.prefix });
      try {
        // Its one event says why, naming the field.
        expect((await client.log.read(jobId)).map((e) => [e.phase, e.error?.code, e.error?.field])).toEqual([
          ["failed", "FORBIDDEN", "spec.networks.1"],
        ]);
      } finally {
        await client.close();
      }
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});
