import { pino } from "pino";
import { describe, expect } from "vitest";
import { startApi } from "../../../test/fixtures/api-server.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";

const ADMIN = "im-admin-token-0123456789abcdef";
const READER = "im-reader-token-0123456789abcdef";
const OPS = "im-ops-token-0123456789abcdef";
const SHA = "ab".repeat(32);

describe("API: the image catalogue", () => {
  test("GET /v1/images needs vms:read (hosts only with hosts:read); POST and DELETE need admin; bad input names the field", async ({
    redisUrl,
    prefix,
  }) => {
    const api = await startApi(
      redisUrl,
      prefix,
      [
        { id: "admin", token: ADMIN, scopes: ["admin"], tenant: "ops" },
        { id: "reader", token: READER, scopes: ["vms:read", "vms:write"], tenant: "acme" },
        { id: "ops", token: OPS, scopes: ["vms:read", "hosts:read"], tenant: "ops2" },
      ],
      { logger: pino({ level: "silent" }) },
    );
    const call = async (method: string, path: string, token: string, body?: unknown) => {
      const res = await fetch(api.base + path, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    try {
      const image = { name: "im-deb", url: "https://images.example.org/deb.qcow2", sha256: SHA.toUpperCase() };
      // A tenant's token may not change the catalogue.
      expect(await call("POST", "/v1/images", READER, image)).toMatchObject({
        status: 403,
        body: { code: "FORBIDDEN" },
      });
      const created = await call("POST", "/v1/images", ADMIN, image);
      expect(created).toMatchObject({
        status: 201,
        body: { name: "im-deb", sha256: SHA, source: { kind: "url", url: image.url } },
      });
      // Again, the same: the same record; another URL under the name: a clash.
      expect((await call("POST", "/v1/images", ADMIN, image)).status).toBe(201);
      expect(await call("POST", "/v1/images", ADMIN, { ...image, url: "https://x.example.org/y" })).toMatchObject({
        status: 409,
        body: { code: "NAME_CLASH" },
      });
      for (const [body, field] of [
        [{ name: "../etc", url: image.url }, "name"],
        [{ name: "im-x", url: "ftp://x.example.org/y" }, "url"],
        [{ name: "im-x", url: image.url, sha256: "xyz" }, "sha256"],
        [{ name: "im-x" }, "url"],
        [{ name: "im-x", file: "/srv/x.qcow2" }, "host"],
      ] as const) {
        expect(await call("POST", "/v1/images", ADMIN, body), JSON.stringify(body)).toMatchObject({
          status: 400,
          body: { code: "INVALID_SPEC", field },
        });
      }

      const listed = await call("GET", "/v1/images", READER);
      expect(listed.status).toBe(200);
      expect(listed.body).toEqual([expect.objectContaining({ name: "im-deb", sha256: SHA })]);
      expect((listed.body as unknown as Record<string, unknown>[])[0]).not.toHaveProperty("hosts");
      expect((await call("GET", "/v1/images", OPS)).body).toEqual([expect.objectContaining({ hosts: [] })]);

      expect((await call("DELETE", "/v1/images/im-deb", READER)).status).toBe(403);
      expect(await call("DELETE", "/v1/images/im-deb", ADMIN)).toMatchObject({
        status: 200,
        body: { name: "im-deb", removed: true },
      });
      expect(await call("DELETE", "/v1/images/im-deb", ADMIN)).toMatchObject({
        status: 404,
        body: { code: "NOT_FOUND" },
      });
      expect((await call("GET", "/v1/images", READER)).body).toEqual([]);
    } finally {
      await api.close();
    }
  });
});
