import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect } from "vitest";
import { tinySpec } from "../../../test/fixtures/api-streams.js";
import { hostUp } from "../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";
import { TokenStore } from "./auth.js";
import { ApiServer } from "./server.js";

const TOKENS = {
  rw: "rw-token-0123456789abcdef",
  ro: "ro-token-0123456789abcdef",
  limited: "limited-token-0123456789abcdef",
  small: "small-token-0123456789abcdef",
};

interface AuditLine {
  audit: true;
  tokenId?: string;
  tenant?: string;
  action: string;
  target: string;
  outcome: number;
  code?: string;
}

describe("audit log", () => {
  test("every refused mutating call (401, 403, 400, 404, 409, 429, quota) gets one audit line, as accepted ones do", async ({
    redisUrl,
    prefix,
  }) => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString("utf8").split("\n")) if (line !== "") lines.push(JSON.parse(line));
        done();
      },
    });
    const server = new ApiServer({
      redisUrl,
      prefix,
      tokens: new TokenStore([
        { id: "rw", token: TOKENS.rw, scopes: ["vms:read", "vms:write"], tenant: "acme" },
        { id: "ro", token: TOKENS.ro, scopes: ["vms:read"], tenant: "acme" },
        { id: "limited", token: TOKENS.limited, scopes: ["vms:write"], tenant: "acme", rateLimit: 1 },
        { id: "small", token: TOKENS.small, scopes: ["vms:write"], tenant: "small", quota: { memoryMiB: 128 } },
      ]),
      logger: pino({ level: "info" }, sink),
      port: 0,
    });
    try {
      await server.start();
      await hostUp(server.fleet, "as-a1");
      const call = async (method: string, path: string, token?: string, body?: string, headers = {}) => {
        const res = await fetch(server.url + path, {
          method,
          headers: {
            ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
            ...(body === undefined ? {} : { "content-type": "application/json" }),
            ...headers,
          },
          ...(body === undefined ? {} : { body }),
        });
        await res.text();
        return res.status;
      };
      const create = (name: string) => JSON.stringify({ spec: tinySpec(name) });
      const calls: [status: number, code: string | undefined, tokenId: string | undefined, target: string][] = [
        [await call("POST", "/v1/vms", undefined, create("as-1")), "UNAUTHENTICATED", undefined, "/v1/vms"],
        [await call("DELETE", "/v1/vms/as-1", "not-a-token-0123456789"), "UNAUTHENTICATED", undefined, "/v1/vms/as-1"],
        [await call("POST", "/v1/vms", TOKENS.ro, create("as-2")), "FORBIDDEN", "ro", "/v1/vms"],
        [await call("POST", "/v1/vms", TOKENS.rw, "{}"), "INVALID_SPEC", "rw", "/v1/vms"],
        [await call("POST", "/v1/batches", TOKENS.rw, "{not json"), "INVALID_SPEC", "rw", "/v1/batches"],
        [await call("DELETE", "/v1/vms/as-nope", TOKENS.rw), "VM_NOT_FOUND", "rw", "/v1/vms/as-nope"],
        [await call("POST", "/v1/vms", TOKENS.rw, "{}", { "idempotency-key": "k1" }), "INVALID_SPEC", "rw", "/v1/vms"],
        [
          await call("POST", "/v1/vms", TOKENS.rw, create("as-3"), { "idempotency-key": "k1" }),
          "IDEMPOTENCY_CONFLICT",
          "rw",
          "/v1/vms",
        ],
        [await call("POST", "/v1/vms", TOKENS.limited, "{}"), "INVALID_SPEC", "limited", "/v1/vms"],
        [await call("POST", "/v1/vms", TOKENS.limited, create("as-4")), "RATE_LIMITED", "limited", "/v1/vms"],
        [await call("POST", "/v1/vms", TOKENS.small, create("as-5")), "QUOTA_EXCEEDED", "small", "/v1/vms"],
        [await call("POST", "/v1/vms", TOKENS.rw, create("as-6")), undefined, "rw", "/v1/vms"],
      ];
      expect(calls.map((c) => c[0])).toEqual([401, 401, 403, 400, 400, 404, 400, 409, 400, 429, 403, 202]);
      // The audit line is written once the answer is sent: wait for the last one.
      for (let i = 0; i < 100 && lines.filter((l) => l.audit === true).length < calls.length; i++)
        await new Promise((r) => setTimeout(r, 20));
      const audit = lines.filter((l) => l.audit === true) as unknown as AuditLine[];
      expect(audit).toHaveLength(calls.length);
      calls.forEach(([status, code, tokenId, target], i) => {
        const line = audit[i];
        expect(line, `call ${i}`).toMatchObject({ outcome: status, target });
        expect(line?.code, `call ${i}`).toBe(code);
        expect(line?.tokenId, `call ${i}`).toBe(tokenId);
        if (tokenId !== undefined) expect(line?.tenant, `call ${i}`).toBe(tokenId === "small" ? "small" : "acme");
        expect(line?.action, `call ${i}`).toMatch(/^(POST|DELETE) \/v1\//);
      });
    } finally {
      await server.close();
    }
  });
});
