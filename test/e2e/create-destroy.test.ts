import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import {
  cliEnv,
  domainState,
  type FleetEnv,
  filesIn,
  forceClean,
  jsonLines,
  leftovers,
  runCli,
  startWorker,
  vmName,
  type WorkerProcess,
} from "./harness.js";

const fleet: FleetEnv = {
  redisUrl: inject("redisUrl"),
  prefix: `test-${randomUUID()}`,
  imageDir: inject("imageDir"),
  testRoot: inject("testRoot"),
};
const env = cliEnv(fleet);
let worker: WorkerProcess;

/** The guest's boot flags: the `tiny` test guest, under TCG, no network. */
function bootFlags(token: string): string[] {
  return [
    "--memory",
    "256",
    "--disk",
    "size=1,backing=tiny",
    "--boot",
    `kernel=tiny,initrd=tiny,kernel_args=console=ttyS0 virtfleet.e2e=${token}`,
    "--network",
    "none",
    "--virt-type",
    "qemu",
  ];
}

beforeAll(async () => {
  worker = await startWorker(fleet);
});

afterAll(async () => {
  await worker?.stop();
  await forceClean([worker.storageDir]);
});

// An end-to-end test that leaves a domain, a pool or a file behind fails.
afterEach(async () => {
  const left = await leftovers();
  const files = await filesIn(worker.storageDir);
  if (left.domains.length + left.pools.length + files.length > 0) await forceClean([]);
  expect({ ...left, files }).toEqual({ domains: [], pools: [], files: [] });
});

describe("virtfleet create / destroy through Redis and a real worker", () => {
  it("boots a real guest with every phase shown, and destroy leaves nothing", async () => {
    const name = vmName("boot");
    const token = randomUUID().slice(0, 8);
    const created = await runCli(["create", "--name", name, ...bootFlags(token), "--wait", "--wait-ready"], env);
    expect(created.stderr).toBe("");
    expect(created.code, created.stdout + worker.logs()).toBe(0);
    const phases = created.stdout
      .split("\n")
      .map((l) => /^\[\s*\d+%\]\s+(\S+)/.exec(l)?.[1])
      .filter(Boolean);
    expect(phases).toEqual([
      "queued",
      "placed",
      "disk.creating",
      "disk.ready",
      "domain.defining",
      "domain.running",
      "guest.ready",
      "done",
    ]);

    expect(await domainState(name)).toBe("running");
    const dir = path.join(worker.storageDir, name);
    expect((await filesIn(dir)).sort()).toEqual([".virtfleet.json", "console.log", "disk0.qcow2"]);
    const console = await readFile(path.join(dir, "console.log"), "utf8");
    expect(console).toMatch(new RegExp(`VIRTFLEET_READY cmdline=.*virtfleet\\.e2e=${token}`));

    const ls = await runCli(["ls", "--json"], env);
    expect(JSON.parse(ls.stdout)).toEqual([expect.objectContaining({ name, hostId: worker.hostId, state: "running" })]);

    const destroyed = await runCli(["destroy", name, "--wait", "--json"], env);
    expect(destroyed.code, destroyed.stdout + destroyed.stderr).toBe(0);
    expect(jsonLines(destroyed.stdout).map((e) => e.phase)).toEqual([
      "queued",
      "placed",
      "stopping",
      "domain.undefined",
      "storage.removed",
      "done",
    ]);
    expect(await domainState(name)).toBeUndefined();
    expect(await filesIn(dir)).toEqual([]);
    expect(JSON.parse((await runCli(["ls", "--json"], env)).stdout)).toEqual([]);
  });

  it("asking twice for the same VM gives one VM", async () => {
    const name = vmName("twice");
    const flags = ["create", "--name", name, ...bootFlags("x"), "--json"];
    const [a, b] = await Promise.all([runCli(flags, env), runCli(flags, env)]);
    expect([a.code, b.code]).toEqual([0, 0]);
    expect(jsonLines(a.stdout)[0]?.jobId).toBe(jsonLines(b.stdout)[0]?.jobId);
    const waited = await runCli(["watch", String(jsonLines(a.stdout)[0]?.jobId)], env);
    expect(waited.code).toBe(0);
    expect(await domainState(name)).toBe("running");
    const other = await runCli(["create", "--name", name, ...bootFlags("x"), "--vcpus", "2", "--json"], env);
    expect(other.code).toBe(1);
    expect(jsonLines(other.stdout)[0]).toMatchObject({ error: { code: "NAME_CLASH" } });
    expect((await runCli(["destroy", name, "--wait"], env)).code).toBe(0);
    // Destroying what is gone succeeds.
    expect((await runCli(["destroy", name, "--wait", "--host", worker.hostId], env)).code).toBe(0);
  });

  it("a create no host can serve is refused with a stable code, exits 1 and leaves nothing behind", async () => {
    const name = vmName("fail");
    const r = await runCli(
      [
        "create",
        "--name",
        name,
        "--memory",
        "256",
        "--disk",
        "size=1,backing=no-such-image",
        "--import",
        "--network",
        "none",
        "--wait",
        "--json",
      ],
      env,
    );
    expect(r.code).toBe(1);
    expect(jsonLines(r.stdout)).toEqual([
      { vm: name, error: expect.objectContaining({ code: "IMAGE_NOT_FOUND", field: "spec.disks.0.backing" }) },
    ]);
    expect(await domainState(name)).toBeUndefined();
    expect(JSON.parse((await runCli(["ls", "--json"], env)).stdout)).toEqual([]);
  });

  it("a virt-install failure carries the command and its stderr, and is rolled back", async () => {
    const name = vmName("vi");
    // A bridge that does not exist: qemu-img succeeds, virt-install fails.
    const r = await runCli(
      [
        "create",
        "--name",
        name,
        "--memory",
        "256",
        "--disk",
        "size=1",
        "--import",
        "--network",
        `bridge=vfnobr${randomUUID().slice(0, 6)}`,
        "--virt-type",
        "qemu",
        "--wait",
        "--json",
      ],
      env,
    );
    expect(r.code).toBe(1);
    const last = jsonLines(r.stdout).at(-1) as {
      phase: string;
      error: { code: string; command: string[]; stderr: string };
    };
    expect(last.phase).toBe("failed");
    expect(last.error.code).toBe("COMMAND_FAILED");
    expect(last.error.command[0]).toBe("virt-install");
    expect(last.error.stderr).toMatch(/ERROR/);
    expect(await domainState(name)).toBeUndefined();
  });

  it("an unreachable Redis is a clear REDIS_UNAVAILABLE error, not a hang", async () => {
    const r = await runCli(
      ["ls", "--json"],
      { REDIS_URL: "redis://127.0.0.1:1", VIRTFLEET_PREFIX: fleet.prefix },
      30_000,
    );
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ error: { code: "REDIS_UNAVAILABLE" } });
    expect(r.stderr).toMatch(/Redis did not answer/);
  });

  it("bad input exits 2, names the flag, and enqueues nothing", async () => {
    const redis = new Redis(fleet.redisUrl);
    try {
      // What a create would write: job records and events, VM records and claims, queued jobs.
      const written = async () => ({
        jobs: (await redis.keys(`${fleet.prefix}:job:*`)).sort(),
        vms: (await redis.keys(`${fleet.prefix}:vm*`)).sort(),
        claims: await redis.hgetall(`${fleet.prefix}:placement:claims`),
        queued: await redis.llen(`${fleet.prefix}:host.${worker.hostId}:wait`),
      });
      const before = await written();
      const cases: [string[], RegExp][] = [
        [["create", "--name", "Bad_Name", "--memory", "256", "--import", "--disk", "size=1"], /--name/],
        [["create", "--name", "ok", "--memory", "12", "--import", "--disk", "size=1"], /--memory/],
        [["create", "--name", "ok", "--memory", "256", "--import", "--disk", "size=lots"], /--disk/],
        [["create", "--name", "ok", "--memory", "256", "--cdrom", "../../etc/passwd"], /--cdrom/],
        [
          [
            "create",
            "--name",
            "ok",
            "--memory",
            "256",
            "--import",
            "--disk",
            "size=1",
            "--network",
            "bridge=a;rm -rf /",
          ],
          /--network/,
        ],
        [
          ["create", "--name", "ok", "--memory", "256", "--import", "--disk", "size=1", "--virt-type", "xen"],
          /--virt-type/,
        ],
        [
          ["create", "--name", "ok", "--memory", "256", "--import", "--disk", "size=1", "--no-such-flag"],
          /no-such-flag/,
        ],
      ];
      for (const [args, message] of cases) {
        const r = await runCli(args, env);
        expect(r.code, args.join(" ")).toBe(2);
        expect(r.stderr).toMatch(message);
      }
      expect(await written()).toEqual(before);
    } finally {
      redis.disconnect();
    }
  });
});
