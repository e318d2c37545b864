import { FleetClient } from "@virtfleet/fleet";
import { SIGNATURE_HEADER, sign, TIMESTAMP_HEADER } from "@virtfleet/server";
import { describe, expect } from "vitest";
import { call, receiver, spec, startApi, until } from "../../../test/fixtures/api-server.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";

const FALLBACK = "fallback-secret-0123456789abcdef";
const ACME_SECRET = "acme-own-secret-0123456789abcdef";
const GLOBEX_SECRET = "globex-own-secret-0123456789abcdef";
const TOKENS = {
  acme: "acme-token-0123456789abcdef",
  globex: "globex-token-0123456789abcdef",
  plain: "plain-token-0123456789abcdef",
};
const tokens = [
  { id: "acme", token: TOKENS.acme, scopes: ["vms:read", "vms:write"], tenant: "acme", webhookSecret: ACME_SECRET },
  {
    id: "globex",
    token: TOKENS.globex,
    scopes: ["vms:read", "vms:write"],
    tenant: "globex",
    webhookSecret: GLOBEX_SECRET,
  },
  { id: "plain", token: TOKENS.plain, scopes: ["vms:read", "vms:write"], tenant: "plain" },
] as const satisfies readonly unknown[];
const tokenList = () => tokens.map((t) => ({ ...t, scopes: [...t.scopes] }));

type Api = Awaited<ReturnType<typeof startApi>>;

/** Creates a VM through the API with a callback, then ends its job as a worker would (`done`). */
async function createAndFinish(api: Api, token: string, name: string, callbackUrl: string): Promise<string> {
  const r = await call(api.base, "POST", "/v1/vms", token, { spec: spec(name), callbackUrl });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  const jobId = String(r.body.jobId);
  await api.server.fleet.log.append({ jobId, kind: "create", vm: name, phase: "done", message: "done" });
  return jobId;
}

const ended = (api: Api, n = 1) =>
  until(() => api.logs.filter((l) => /"msg":"webhook (delivered|gave up)"/.test(l)).length >= n, 15_000);

describe("webhook callback URLs", () => {
  test("loopback, private, link-local and metadata callbacks are refused (400) unless allowed; nothing is enqueued", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const hook = await receiver((_req, _body, res) => void res.writeHead(204).end());
    const strict = await startApi(redisUrl, prefix, tokenList(), { webhookSecret: FALLBACK });
    try {
      const before = (await redis.keys(`${prefix}:*`)).sort();
      const refused = [
        `${hook.url}/hook`,
        `http://localhost:${hook.port}/hook`,
        `http://[::1]:${hook.port}/hook`,
        `http://[::ffff:127.0.0.1]:${hook.port}/hook`,
        "http://0x7f.0.0.1/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://224.0.0.1/",
      ];
      for (const callbackUrl of refused) {
        const r = await call(strict.base, "POST", "/v1/vms", TOKENS.acme, { spec: spec("at-w1"), callbackUrl });
        expect([callbackUrl, r.status, r.body.code, r.body.field]).toEqual([
          callbackUrl,
          400,
          "INVALID_SPEC",
          "callbackUrl",
        ]);
      }
      const batch = await call(strict.base, "POST", "/v1/batches", TOKENS.acme, {
        template: spec("at-wb{n}"),
        count: 2,
        callbackUrl: `${hook.url}/hook`,
      });
      expect([batch.status, batch.body.field]).toEqual([400, "callbackUrl"]);
      expect((await redis.keys(`${prefix}:*`)).sort()).toEqual(before);
      // A public address is fine (only checked here, never contacted).
      const ok = await call(strict.base, "POST", "/v1/vms", TOKENS.acme, {
        spec: spec("at-w2"),
        callbackUrl: "https://1.1.1.1/hook?x=1",
      });
      expect(ok.status).toBe(202);
    } finally {
      await strict.close();
    }

    const open = await startApi(redisUrl, `${prefix}-open`, tokenList(), {
      webhookSecret: FALLBACK,
      webhookAllowPrivate: true,
    });
    try {
      const ok = await call(open.base, "POST", "/v1/vms", TOKENS.acme, {
        spec: spec("at-w3"),
        callbackUrl: `${hook.url}/hook`,
      });
      expect(ok.status).toBe(202);
      // Metadata services stay refused whatever the flag says.
      const meta = await call(open.base, "POST", "/v1/vms", TOKENS.acme, {
        spec: spec("at-w4"),
        callbackUrl: "http://169.254.169.254/latest/meta-data/",
      });
      expect([meta.status, meta.body.field]).toEqual([400, "callbackUrl"]);
    } finally {
      await open.close();
      await hook.close();
    }
  });

  test("at delivery, a loopback address is refused too (a job made through Redis, or a name that now resolves to it)", async ({
    redisUrl,
    prefix,
  }) => {
    let hits = 0;
    const hook = await receiver((_req, _body, res) => {
      hits++;
      res.writeHead(204).end();
    });
    const api = await startApi(redisUrl, prefix, tokenList(), { webhookSecret: FALLBACK });
    const client = new FleetClient({ redisUrl, prefix });
    try {
      for (const [i, url] of [`${hook.url}/a`, `http://localhost:${hook.port}/b`].entries()) {
        const job = await client.createVm(spec(`at-d${i}`), { tenant: "acme", callbackUrl: url });
        await client.log.append({ jobId: job.id, kind: "create", vm: `at-d${i}`, phase: "done", message: "done" });
      }
      expect(await ended(api, 2)).toBe(true);
      expect(hits).toBe(0);
      expect(api.logs.filter((l) => l.includes('"msg":"webhook gave up"'))).toHaveLength(2);
    } finally {
      await client.close();
      await api.close();
      await hook.close();
    }
  });

  test("a 3xx answer is a failed delivery: the redirect is never followed", async ({ redisUrl, prefix }) => {
    let second = 0;
    let first = 0;
    const target = await receiver((_req, _body, res) => {
      second++;
      res.writeHead(204).end();
    });
    const redirecting = await receiver((_req, _body, res) => {
      first++;
      res.writeHead(302, { location: `${target.url}/stolen` }).end();
    });
    const api = await startApi(redisUrl, prefix, tokenList(), { webhookAllowPrivate: true });
    try {
      await createAndFinish(api, TOKENS.acme, "at-r1", `${redirecting.url}/hook`);
      expect(await ended(api)).toBe(true);
      expect(first).toBeGreaterThanOrEqual(1);
      expect(second).toBe(0);
      expect(api.logs.some((l) => l.includes('"msg":"webhook gave up"'))).toBe(true);
    } finally {
      await api.close();
      await redirecting.close();
      await target.close();
    }
  });

  test("each tenant's webhooks are signed with its own secret; a tenant without one uses the server's", async ({
    redisUrl,
    prefix,
  }) => {
    const got = new Map<string, { body: string; signature: string; timestamp: string }>();
    const hook = await receiver((req, body, res) => {
      got.set(String(req.url), {
        body,
        signature: String(req.headers[SIGNATURE_HEADER]),
        timestamp: String(req.headers[TIMESTAMP_HEADER]),
      });
      res.writeHead(204).end();
    });
    const api = await startApi(redisUrl, prefix, tokenList(), { webhookSecret: FALLBACK, webhookAllowPrivate: true });
    try {
      await createAndFinish(api, TOKENS.acme, "at-s1", `${hook.url}/acme`);
      await createAndFinish(api, TOKENS.globex, "at-s2", `${hook.url}/globex`);
      await createAndFinish(api, TOKENS.plain, "at-s3", `${hook.url}/plain`);
      expect(await until(() => got.size === 3)).toBe(true);
      const check = (path: string, secret: string) => {
        const g = got.get(path);
        expect(g, path).toBeDefined();
        if (g === undefined) return;
        expect([path, g.signature]).toEqual([path, sign(secret, g.timestamp, g.body)]);
      };
      check("/acme", ACME_SECRET);
      check("/globex", GLOBEX_SECRET);
      check("/plain", FALLBACK);
      expect(got.get("/acme")?.signature).not.toBe(
        sign(GLOBEX_SECRET, got.get("/acme")?.timestamp ?? "", got.get("/acme")?.body ?? ""),
      );
    } finally {
      await api.close();
    }
    // With no server secret, a tenant without its own cannot ask for callbacks; one with its own can.
    const bare = await startApi(redisUrl, `${prefix}-bare`, tokenList(), { webhookAllowPrivate: true });
    try {
      const refused = await call(bare.base, "POST", "/v1/vms", TOKENS.plain, {
        spec: spec("at-s4"),
        callbackUrl: `${hook.url}/plain`,
      });
      expect([refused.status, refused.body.code, refused.body.field]).toEqual([400, "INVALID_SPEC", "callbackUrl"]);
      const ok = await call(bare.base, "POST", "/v1/vms", TOKENS.acme, {
        spec: spec("at-s5"),
        callbackUrl: `${hook.url}/acme`,
      });
      expect(ok.status).toBe(202);
    } finally {
      await bare.close();
      await hook.close();
    }
  });

  test("with concurrency 2 and slow receivers, at most 2 deliveries are in flight, and one tenant cannot take both", async ({
    redisUrl,
    prefix,
  }) => {
    const inFlight = { acme: 0, globex: 0 };
    const most = { acme: 0, globex: 0, all: 0 };
    const received = { acme: 0, globex: 0 };
    let gateOpen = false;
    const held: (() => void)[] = [];
    const hook = await receiver(async (req, _body, res) => {
      const who = req.url === "/acme" ? "acme" : "globex";
      inFlight[who]++;
      most[who] = Math.max(most[who], inFlight[who]);
      most.all = Math.max(most.all, inFlight.acme + inFlight.globex);
      // acme's receiver hangs until the gate opens; globex's is merely slow.
      if (who === "acme" && !gateOpen) await new Promise<void>((r) => held.push(r));
      else await new Promise((r) => setTimeout(r, 200));
      inFlight[who]--;
      received[who]++;
      res.writeHead(204).end();
    });
    const api = await startApi(redisUrl, prefix, tokenList(), {
      webhookSecret: FALLBACK,
      webhookAllowPrivate: true,
      webhookConcurrency: 2,
    });
    try {
      const finishBatch = async (token: string, pattern: string, count: number, path: string) => {
        const batch = await call(api.base, "POST", "/v1/batches", token, {
          template: spec(pattern),
          count,
          callbackUrl: `${hook.url}${path}`,
        });
        expect(batch.status).toBe(202);
        for (const i of batch.body.items as { vm: string; jobId: string }[])
          await api.server.fleet.log.append({ jobId: i.jobId, kind: "create", vm: i.vm, phase: "done", message: "d" });
      };
      await finishBatch(TOKENS.acme, "at-ca{n}", 4, "/acme");
      expect(await until(() => held.length >= 1)).toBe(true);
      // acme's receiver holds its deliveries; globex's still get through.
      await finishBatch(TOKENS.globex, "at-cg{n}", 4, "/globex");
      expect(await until(() => received.globex === 4, 20_000)).toBe(true);
      expect(received.acme).toBe(0);
      gateOpen = true;
      for (const release of held.splice(0)) release();
      expect(await until(() => received.acme === 4, 20_000)).toBe(true);
      expect(most).toEqual({ acme: 1, globex: 1, all: 2 });
    } finally {
      gateOpen = true;
      for (const release of held.splice(0)) release();
      await api.close();
      await hook.close();
    }
  });

  test("a callback URL's credentials and query string never appear in a log line", async ({ redisUrl, prefix }) => {
    const seen: { url: string; authorization: string }[] = [];
    let failures = 1;
    const hook = await receiver((req, _body, res) => {
      seen.push({ url: String(req.url), authorization: String(req.headers.authorization) });
      res.writeHead(failures-- > 0 ? 500 : 204).end();
    });
    const closed = await receiver((_req, _body, res) => void res.writeHead(204).end());
    await closed.close(); // a port where nothing listens: every attempt fails
    const api = await startApi(redisUrl, prefix, tokenList(), { webhookSecret: FALLBACK, webhookAllowPrivate: true });
    try {
      const secretUrl = (port: number) => `http://hookuser:pa55w0rd-XYZ@127.0.0.1:${port}/hook?token=qu3ry-s3cret-ABC`;
      await createAndFinish(api, TOKENS.acme, "at-l1", secretUrl(hook.port));
      await createAndFinish(api, TOKENS.acme, "at-l2", secretUrl(closed.port));
      expect(await ended(api, 2)).toBe(true);
      // The receiver got the query and the credentials (as Basic authorization).
      expect(seen.at(-1)).toEqual({
        url: "/hook?token=qu3ry-s3cret-ABC",
        authorization: `Basic ${Buffer.from("hookuser:pa55w0rd-XYZ").toString("base64")}`,
      });
      expect(api.logs.some((l) => l.includes('"msg":"webhook delivered"'))).toBe(true);
      expect(api.logs.some((l) => l.includes('"msg":"webhook gave up"'))).toBe(true);
      const leaks = api.logs.filter((l) => /pa55w0rd|qu3ry-s3cret|hookuser|token=/.test(l));
      expect(leaks).toEqual([]);
      // What the logs do show: origin and path.
      expect(api.logs.some((l) => l.includes(`"url":"http://127.0.0.1:${hook.port}/hook"`))).toBe(true);
    } finally {
      await api.close();
      await hook.close();
    }
  });
});
