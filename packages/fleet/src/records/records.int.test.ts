import { VirtfleetError } from "@virtfleet/core";
import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { Keys } from "../redis/keys.js";
import { EventLog } from "./event-log.js";
import { VmRegistry } from "./vm-registry.js";

async function thrown(p: Promise<unknown>): Promise<VirtfleetError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VirtfleetError);
  return error as VirtfleetError;
}

describe("records read from Redis are parsed with their schemas", () => {
  test("a job record with a broken field: getJob throws INTERNAL naming the field; a sound one reads as written", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const log = new EventLog(redis, keys);
    await log.createJob({ jobId: "rc-job-ok", kind: "create", vm: "rc-ok", hostId: "rc-h1", tenant: "acme" });
    await log.requestCancel("rc-job-ok");
    expect(await log.getJob("rc-job-ok")).toMatchObject({
      jobId: "rc-job-ok",
      kind: "create",
      vm: "rc-ok",
      hostId: "rc-h1",
      phase: "queued",
      percent: 0,
      tenant: "acme",
      batchId: undefined,
      error: undefined,
      cancelRequested: true,
    });

    await redis.hset(keys.job("rc-job-bad"), { jobId: "rc-job-bad", kind: "create", vm: "rc-bad", error: "{not json" });
    const bad = await thrown(log.getJob("rc-job-bad"));
    expect(bad.code).toBe("INTERNAL");
    expect(bad.field).toBe("error");
    expect(bad.message).toMatch(/rc-job-bad/);

    await redis.hset(keys.job("rc-job-kind"), { jobId: "rc-job-kind", kind: "reboot", vm: "rc-bad" });
    expect((await thrown(log.getJob("rc-job-kind"))).field).toBe("kind");
    await redis.hset(keys.job("rc-job-phase"), { jobId: "rc-job-phase", kind: "create", vm: "v", phase: "exploded" });
    expect((await thrown(log.getJob("rc-job-phase"))).field).toBe("phase");
    expect(await log.getJob("rc-job-none")).toBeUndefined();
  });

  test("a VM record with a broken field: get throws INTERNAL naming it; list leaves it out and lists the rest", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const vms = new VmRegistry(redis, keys);
    const sound = {
      name: "rc-vm-ok",
      hostId: "rc-h1",
      state: "running" as const,
      fingerprint: "f",
      jobId: "job-1",
      memoryMiB: 256,
      vcpus: 1,
      labels: { team: "a" },
      tenant: "acme",
      updatedAt: "2026-01-01T00:00:00.000Z",
    };
    await vms.put(sound);
    await vms.put({ ...sound, name: "rc-vm-bad" });
    await redis.hset(keys.vm("rc-vm-bad"), "labels", "[1,2");
    await vms.put({ ...sound, name: "rc-vm-mem" });
    await redis.hset(keys.vm("rc-vm-mem"), "memoryMiB", "lots");

    expect(await vms.get("rc-vm-ok")).toEqual(sound);
    const bad = await thrown(vms.get("rc-vm-bad"));
    expect(bad.code).toBe("INTERNAL");
    expect(bad.field).toBe("labels");
    expect(bad.message).toMatch(/rc-vm-bad/);
    expect((await thrown(vms.get("rc-vm-mem"))).field).toBe("memoryMiB");
    expect((await vms.list()).map((v) => v.name)).toEqual(["rc-vm-ok"]);
  });
});
