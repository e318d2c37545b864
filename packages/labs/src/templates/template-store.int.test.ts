import { type TemplateSpecInput, ValidationError, VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { LabKeys } from "../keys.js";
import { TemplateStore } from "./template-store.js";

const web: TemplateSpecInput = {
  memoryMiB: 512,
  vcpus: 1,
  disks: [{ sizeGiB: 4, backing: "debian12.qcow2" }],
  install: { method: "import" },
  labels: { role: "web" },
};

function store(redis: Redis, prefix: string) {
  const keys = new LabKeys(prefix);
  return { keys, templates: new TemplateStore(redis, keys) };
}

/** The error `promise` rejects with (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<VirtfleetError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(VirtfleetError);
    return error as VirtfleetError;
  }
  throw new Error("expected a rejection");
}

describe("TemplateStore", () => {
  test("the first put is version 1; the same spec again keeps the version; a change bumps it", async ({
    redis,
    prefix,
  }) => {
    const { templates } = store(redis, prefix);
    const first = await templates.put("web", web);
    expect(first).toMatchObject({ name: "web", version: 1, changed: true });
    expect(first.spec.memoryMiB).toBe(512);

    // The same spec, keys in another order and defaults spelled out: still version 1, unchanged.
    const same = await templates.put("web", {
      labels: { role: "web" },
      install: { method: "import" },
      vcpus: 1,
      memoryMiB: 512,
      disks: [{ backing: "debian12.qcow2", sizeGiB: 4 }],
      networks: [],
    });
    expect(same).toMatchObject({ version: 1, changed: false });

    const second = await templates.put("web", { ...web, memoryMiB: 1024 });
    expect(second).toMatchObject({ version: 2, changed: true });
    expect(second.createdAt).toBe(first.createdAt);
    expect((await templates.get("web"))?.spec.memoryMiB).toBe(1024);
    expect((await templates.list()).map((t) => [t.name, t.version])).toEqual([["web", 2]]);
  });

  test("a bad spec is INVALID_SPEC naming the field, and nothing is stored", async ({ redis, prefix }) => {
    const { templates, keys } = store(redis, prefix);
    const error = await rejection(templates.put("web", { ...web, memoryMiB: 8 }));
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.code).toBe("INVALID_SPEC");
    expect(error.field).toBe("memoryMiB");
    expect(await redis.exists(keys.template("web"), keys.templates())).toBe(0);

    const named = await rejection(templates.put("web", { ...web, name: "web" }));
    expect(named.code).toBe("INVALID_SPEC");
    const badName = await rejection(templates.put("Web_1", web));
    expect(badName.field).toBe("name");
    expect(await redis.exists(keys.template("web"), keys.template("Web_1"), keys.templates())).toBe(0);

    // A bad update leaves the stored version as it was.
    await templates.put("web", web);
    await rejection(templates.put("web", { ...web, disks: [] }));
    expect(await templates.get("web")).toMatchObject({ version: 1, spec: { memoryMiB: 512 } });
  });

  test("tenants see and change only their own templates (and read the shared ones)", async ({ redis, prefix }) => {
    const { templates } = store(redis, prefix);
    await templates.put("acme-web", web, { tenant: "acme" });
    await templates.put("shared", web); // an operator's, with no tenant
    const blue = { tenant: "blue" };

    expect(await templates.get("acme-web", blue)).toBeUndefined();
    expect((await rejection(templates.require("acme-web", blue))).code).toBe("NOT_FOUND");
    expect((await templates.list(blue)).map((t) => t.name)).toEqual(["shared"]);
    expect((await templates.list({ tenant: "acme" })).map((t) => t.name)).toEqual(["acme-web", "shared"]);
    expect((await templates.list()).map((t) => t.name)).toEqual(["acme-web", "shared"]);
    expect((await templates.get("acme-web", { tenant: "acme" }))?.tenant).toBe("acme");

    // Another tenant can neither overwrite nor remove it, nor learn anything from the refusal but the clash.
    const clash = await rejection(templates.put("acme-web", { ...web, vcpus: 4 }, blue));
    expect(clash.code).toBe("NAME_CLASH");
    expect(clash.message).not.toContain('acme"');
    expect((await rejection(templates.remove("acme-web", blue))).code).toBe("NOT_FOUND");
    expect(await templates.get("acme-web")).toMatchObject({ version: 1, spec: { vcpus: 1 } });

    // A tenant may use a shared template, but not change or remove it.
    expect((await rejection(templates.put("shared", { ...web, vcpus: 2 }, blue))).code).toBe("NAME_CLASH");
    expect((await rejection(templates.remove("shared", blue))).code).toBe("FORBIDDEN");
    expect(await templates.get("shared", blue)).toMatchObject({ version: 1 });

    await templates.remove("acme-web", { tenant: "acme" });
    expect(await templates.get("acme-web")).toBeUndefined();
  });

  test("rm is refused while a pool names the template, and allowed once it does not", async ({ redis, prefix }) => {
    const { templates, keys } = store(redis, prefix);
    await templates.put("web", web);
    await templates.put("db", web);
    await redis.sadd(keys.pools(), "front", "back");
    await redis.hset(keys.pool("front"), { name: "front", template: "web" });
    await redis.hset(keys.pool("back"), { name: "back", template: "db" });

    const error = await rejection(templates.remove("web"));
    expect(error.code).toBe("NAME_CLASH");
    expect(error.field).toBe("name");
    expect(error.message).toContain("front");
    expect(await templates.get("web")).toBeDefined();

    await redis.hset(keys.pool("front"), "template", "db");
    await templates.remove("web");
    expect(await templates.get("web")).toBeUndefined();
    expect(await redis.sismember(keys.templates(), "web")).toBe(0);
    expect((await rejection(templates.remove("web"))).code).toBe("NOT_FOUND");
    // A put after a remove starts again at version 1.
    expect(await templates.put("web", web)).toMatchObject({ version: 1, changed: true });
  });
});
