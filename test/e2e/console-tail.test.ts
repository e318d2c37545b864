import { randomUUID } from "node:crypto";
import { FleetClient } from "@virtfleet/fleet";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, startApi } from "../fixtures/api-server.js";
import { filesIn, startWorker, suiteFleet, tinySpec, until, type WorkerProcess } from "./harness.js";
import { domainsNamed, forceCleanNamed } from "./prefixed-cleanup.js";

// GET /v1/vms/{name}/console: the API asks the VM's host's worker for the tail of its serial console.
const PREFIX = "hb-con-";
const ACME = "hb-acme-token-0123456789abcdef";
const OTHER = "hb-other-token-0123456789abcdef";
const fleet = suiteFleet();
let worker: WorkerProcess;
let client: FleetClient;
let api: Awaited<ReturnType<typeof startApi>>;

beforeAll(async () => {
  worker = await startWorker(fleet);
  client = new FleetClient({ redisUrl: fleet.redisUrl, prefix: fleet.prefix });
  api = await startApi(fleet.redisUrl, fleet.prefix, [
    { id: "acme", token: ACME, scopes: ["vms:read", "vms:write"], tenant: "acme" },
    { id: "other", token: OTHER, scopes: ["vms:read"], tenant: "other" },
  ]);
});

afterAll(async () => {
  await api?.close();
  await client?.close();
  await worker?.stop();
  const left = { domains: await domainsNamed(PREFIX), files: await filesIn(worker.storageDir) };
  await forceCleanNamed(PREFIX, [worker.storageDir]);
  expect(left).toEqual({ domains: [], files: [] });
});

describe("console tail through the host's worker", () => {
  it("answers the last lines of a running VM's serial console, to its tenant only", async () => {
    const name = `${PREFIX}${randomUUID().slice(0, 6)}`;
    const created = await call(api.base, "POST", "/v1/vms", ACME, {
      spec: tinySpec(name),
      placement: { host: worker.hostId },
    });
    expect(created.status, created.text).toBe(202);
    const done = await client.job(String(created.body.jobId)).wait({ timeoutMs: 120_000 });
    expect(done.phase, worker.logs()).toBe("done");

    // The test guest prints VIRTFLEET_READY on its console once booted.
    const tail = await until("the guest's ready line on its console", async () => {
      const answer = await call(api.base, "GET", `/v1/vms/${name}/console?lines=500`, ACME);
      expect(answer.status, answer.text).toBe(200);
      const lines = answer.body.lines as string[];
      return lines.some((l) => l.includes("VIRTFLEET_READY")) ? answer.body : undefined;
    });
    expect(tail).toMatchObject({ vm: name, host: worker.hostId });
    expect((tail.lines as string[]).length).toBeGreaterThan(1);
    expect((tail.lines as string[]).some((l) => l.includes("\r"))).toBe(false);
    expect(Number.isNaN(Date.parse(String(tail.updatedAt)))).toBe(false);

    const one = await call(api.base, "GET", `/v1/vms/${name}/console?lines=1`, ACME);
    expect(one.body.lines).toHaveLength(1);
    expect((await call(api.base, "GET", `/v1/vms/${name}/console`, OTHER)).body).toMatchObject({
      code: "VM_NOT_FOUND",
    });

    const destroyed = await call(api.base, "DELETE", `/v1/vms/${name}`, ACME);
    expect(destroyed.status).toBe(202);
    expect((await client.job(String(destroyed.body.jobId)).wait({ timeoutMs: 60_000 })).phase).toBe("done");
    expect((await call(api.base, "GET", `/v1/vms/${name}/console`, ACME)).status).toBe(404);
  });
});
