import { randomUUID } from "node:crypto";
import { rm, writeFile } from "node:fs/promises";
import type { VirtfleetError } from "@virtfleet/core";
import { createRedis, FleetClient, Keys, PowerClient } from "@virtfleet/fleet";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  domainState,
  filesIn,
  startWorker,
  suiteFleet,
  tinySpec,
  until,
  virsh,
  type WorkerProcess,
} from "./harness.js";
import { domainsNamed, forceCleanNamed } from "./prefixed-cleanup.js";

// Pausing and resuming a fleet VM through its host's worker (what a warm pool does with ready VMs).
const PREFIX = "rp-pw-";
const fleet = suiteFleet();
let worker: WorkerProcess;
let client: FleetClient;
let redis: Redis;
let power: PowerClient;

beforeAll(async () => {
  worker = await startWorker(fleet);
  client = new FleetClient({ redisUrl: fleet.redisUrl, prefix: fleet.prefix });
  redis = createRedis({ url: fleet.redisUrl });
  power = new PowerClient(redis, new Keys(fleet.prefix));
});

afterAll(async () => {
  await power?.close();
  redis?.disconnect();
  await client?.close();
  await worker?.stop();
  await forceCleanNamed(PREFIX, [worker.storageDir]);
});

afterEach(async () => {
  const domains = await domainsNamed(PREFIX);
  const files = await filesIn(worker.storageDir);
  if (domains.length + files.length > 0) await forceCleanNamed(PREFIX);
  expect({ domains, files }).toEqual({ domains: [], files: [] });
});

function vm(tag: string): string {
  return `${PREFIX}${tag}-${randomUUID().slice(0, 6)}`;
}

describe("power: suspend and resume through the host's worker", () => {
  it("pauses and resumes a fleet VM (libvirt says so) and refuses another fleet's domain", async () => {
    const name = vm("a");
    const done = await (await client.createVm(tinySpec(name))).wait({ timeoutMs: 120_000 });
    expect(done.phase, worker.logs()).toBe("done");
    const host = worker.hostId;

    let t = performance.now();
    const paused = await power.power(host, name, "suspend");
    const suspendMs = performance.now() - t;
    expect(paused.state).toBe("paused");
    expect(await domainState(name)).toBe("paused");
    // Twice is fine: still paused.
    expect((await power.power(host, name, "suspend")).state).toBe("paused");

    t = performance.now();
    const resumed = await power.power(host, name, "resume");
    const resumeMs = performance.now() - t;
    expect(resumed.state).toBe("running");
    // The tiny guest has no agent: its clock is left alone, quietly.
    expect(resumed.clockSet).toBe(false);
    expect(await domainState(name)).toBe("running");
    expect((await power.power(host, name, "resume")).state).toBe("running");
    console.log(`power round trip: suspend ${suspendMs.toFixed(1)} ms, resume ${resumeMs.toFixed(1)} ms`);

    // A VM not on that host / not there at all.
    await expect(power.power(host, vm("none"), "suspend")).rejects.toMatchObject({ code: "VM_NOT_FOUND" });
    // No worker listens for that host.
    await expect(power.power("no-such-host", name, "suspend")).rejects.toMatchObject({ code: "HOST_NOT_FOUND" });

    expect((await (await client.destroyVm(name)).wait({ timeoutMs: 60_000 })).phase).toBe("done");
  });

  it("never pauses a domain that is not this fleet's", async () => {
    const name = vm("foreign");
    // A running domain with virtfleet's metadata naming this host but another fleet.
    const xml = `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <metadata><vm xmlns='https://virtfleet.dev/xmlns/vm/1' fingerprint='x' job='j-other' host='${worker.hostId}' fleet='${randomUUID()}'/></metadata>
  <os><type arch='x86_64'>hvm</type><kernel>${fleet.imageDir}/tiny.vmlinuz</kernel><initrd>${fleet.imageDir}/tiny.initrd</initrd><cmdline>console=ttyS0</cmdline></os>
  <devices><serial type='pty'/><console type='pty'/></devices>
</domain>`;
    const file = `/tmp/${name}.xml`;
    await writeFile(file, xml);
    const defined = await virsh(["create", file]);
    expect(defined.code, defined.stderr).toBe(0);
    expect(await domainState(name)).toBe("running");
    const error = (await power.power(worker.hostId, name, "suspend").catch((e: unknown) => e)) as VirtfleetError;
    expect(error.code).toBe("VM_NOT_FOUND");
    expect(error.message).toMatch(/not this fleet's/);
    expect(await domainState(name)).toBe("running");
    await virsh(["destroy", name]);
    await rm(file, { force: true });
  });

  it("resumes a cloud guest (with an agent) and sets its clock through guest-set-time", async () => {
    const name = vm("cloud");
    const spec = {
      name,
      memoryMiB: 768,
      vcpus: 1,
      disks: [{ sizeGiB: 4, backing: "debian12" }],
      install: { method: "kernel", kernel: "debian12", initrd: "debian12", kernelArgs: "root=/dev/vda console=ttyS0" },
      networks: [],
      virtType: "qemu",
    };
    const done = await (await client.createVm(spec, { guestReady: { strategy: "agent" } })).wait({
      timeoutMs: 420_000,
    });
    expect(done.phase, worker.logs()).toBe("done");
    expect((await power.power(worker.hostId, name, "suspend")).state).toBe("paused");
    // Paused a while: the guest's clock stands still meanwhile.
    await new Promise((r) => setTimeout(r, 3000));
    const t = performance.now();
    const resumed = await power.power(worker.hostId, name, "resume");
    console.log(`cloud guest resume with guest-set-time: ${(performance.now() - t).toFixed(1)} ms`);
    expect(resumed).toEqual({ state: "running", clockSet: true });
    expect(worker.logs()).toContain("guest-set-time");
    expect((await (await client.destroyVm(name)).wait({ timeoutMs: 120_000 })).phase).toBe("done");
  }, 600_000);

  it("the worker runs the fleet's controller (by default) and gives its lock up on SIGTERM", async () => {
    const lock = `${fleet.prefix}:controller`;
    await until(
      "the worker's controller elected",
      async () => ((await redis.get(lock)) !== null ? true : undefined),
      20_000,
    );
    await worker.stop();
    expect(await redis.get(lock)).toBeNull();
  });
});
