import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { Keys } from "../redis/keys.js";
import { EventLog } from "./event-log.js";
import { type VmRecord, VmRegistry } from "./vm-registry.js";

const record = (name: string): VmRecord => ({
  name,
  hostId: "h1",
  state: "creating",
  fingerprint: "f",
  jobId: `job-${name}`,
  memoryMiB: 256,
  vcpus: 1,
  labels: {},
  updatedAt: new Date().toISOString(),
});

describe("a guest's addresses against real Redis", () => {
  test("guest.ready carries them; done writes them on the VM record with its state", async ({ redis, prefix }) => {
    const keys = new Keys(prefix);
    const log = new EventLog(redis, keys);
    const vms = new VmRegistry(redis, keys);
    await vms.put(record("ry-a"));
    await log.createJob({ jobId: "job-ry-a", kind: "create", vm: "ry-a" });
    const base = { jobId: "job-ry-a", kind: "create" as const, vm: "ry-a" };
    await log.append({ ...base, phase: "guest.ready", message: "guest has 192.0.2.10", addresses: ["192.0.2.10"] });
    expect((await vms.get("ry-a"))?.addresses).toBeUndefined();
    await log.append({
      ...base,
      phase: "done",
      message: "running",
      vmState: { key: keys.vm("ry-a"), state: "running", addresses: ["192.0.2.10", "2001:db8::10"] },
    });
    const events = await log.read("job-ry-a");
    expect(events.map((e) => [e.phase, e.addresses])).toEqual([
      ["guest.ready", ["192.0.2.10"]],
      ["done", undefined],
    ]);
    expect(await vms.get("ry-a")).toMatchObject({ state: "running", addresses: ["192.0.2.10", "2001:db8::10"] });
    expect((await vms.list())[0]?.addresses).toEqual(["192.0.2.10", "2001:db8::10"]);
  });

  test("a VM forgotten meanwhile is not brought back by its addresses; a record without any has none", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const log = new EventLog(redis, keys);
    const vms = new VmRegistry(redis, keys);
    await log.createJob({ jobId: "job-ry-b", kind: "create", vm: "ry-b" });
    await log.append({
      jobId: "job-ry-b",
      kind: "create",
      vm: "ry-b",
      phase: "done",
      message: "running",
      vmState: { key: keys.vm("ry-b"), state: "running", addresses: ["192.0.2.11"] },
    });
    expect(await redis.exists(keys.vm("ry-b"))).toBe(0);
    await vms.put(record("ry-c"));
    expect((await vms.get("ry-c"))?.addresses).toBeUndefined();
    await redis.hset(keys.vm("ry-c"), "addresses", "not json");
    expect((await vms.get("ry-c"))?.addresses).toEqual([]);
  });
});
