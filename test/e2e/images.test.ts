import { createHash, randomUUID } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { ApiServer, TokenStore } from "@virtfleet/server";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import {
  cliEnv,
  domainState,
  type FleetEnv,
  filesIn,
  jsonLines,
  runCli,
  startWorker,
  virsh,
  type WorkerProcess,
} from "./harness.js";

// A worker whose image store has the `tiny` kernel and initrd but no base disk image: the base comes
// from the catalogue, served by a loopback HTTP server under names of this file's own.
const testRoot = inject("testRoot");
const imageDir = path.join(testRoot, `im-images-${randomUUID().slice(0, 8)}`);
const fleet: FleetEnv = { redisUrl: inject("redisUrl"), prefix: `test-${randomUUID()}`, imageDir, testRoot };
const env = cliEnv(fleet);
const tag = randomUUID().slice(0, 6);
let worker: WorkerProcess;
let server: Server;
let baseUrl: string;
let tinySha: string;
/** GET requests per path. */
const hits = new Map<string, number>();
const made = new Set<string>();
const ADMIN_TOKEN = "im-admin-token-0123456789abcdef";
const READER_TOKEN = "im-reader-token-0123456789abcdef";

function imName(what: string): string {
  const name = `im-${what}-${randomUUID().slice(0, 8)}`;
  made.add(name);
  return name;
}

function bootFlags(backing: string): string[] {
  return [
    "--memory",
    "192",
    "--disk",
    `size=1,backing=${backing}`,
    "--boot",
    "kernel=tiny,initrd=tiny,kernel_args=console=ttyS0",
    "--network",
    "none",
    "--virt-type",
    "qemu",
  ];
}

beforeAll(async () => {
  await mkdir(imageDir, { mode: 0o755 });
  for (const f of ["tiny.vmlinuz", "tiny.initrd"])
    await copyFile(path.join(inject("imageDir"), f), path.join(imageDir, f));
  const tiny = await readFile(path.join(inject("imageDir"), "tiny.qcow2"));
  tinySha = createHash("sha256").update(tiny).digest("hex");
  const corrupt = Buffer.from(tiny);
  corrupt[corrupt.length - 1] = (corrupt[corrupt.length - 1] ?? 0) ^ 0xff;
  server = createServer((req, res) => {
    const p = req.url ?? "/";
    hits.set(p, (hits.get(p) ?? 0) + 1);
    const body = p.startsWith("/bad/") ? corrupt : tiny;
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
    // In pieces, a little apart, so a second pull would overlap the first.
    const piece = Math.ceil(body.length / 4);
    let i = 0;
    const next = () => {
      if (i >= 4) return res.end();
      res.write(body.subarray(i * piece, (i + 1) * piece));
      i++;
      setTimeout(next, 100);
    };
    next();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  worker = await startWorker(fleet, { hostId: `im-host-${tag}` });
});

afterAll(async () => {
  await worker?.stop();
  for (const name of made) {
    await virsh(["destroy", name]);
    await virsh(["undefine", name]);
  }
  if (worker !== undefined) await rm(worker.storageDir, { recursive: true, force: true });
  await rm(imageDir, { recursive: true, force: true });
  await new Promise((resolve) => server?.close(resolve));
});

// A test that leaves a domain or a VM file behind fails.
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

describe("images: one catalogue, pulled by the host that needs them", () => {
  it("a host that lacks a catalogued image pulls it once for two concurrent creates, verifies it, and boots both", async () => {
    const image = `im-base-${tag}`;
    const imported = await runCli(
      ["images", "import", image, "--url", `${baseUrl}/good/${image}`, "--sha256", tinySha, "--json"],
      env,
    );
    expect(imported.code, imported.stdout + imported.stderr).toBe(0);
    const listed = await runCli(["images", "ls", "--json"], env);
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({
        name: image,
        sha256: tinySha,
        source: { kind: "url", url: `${baseUrl}/good/${image}` },
        hosts: [],
      }),
    ]);

    const a = imName("a");
    const b = imName("b");
    const [ra, rb] = await Promise.all(
      [a, b].map((n) => runCli(["create", "--name", n, ...bootFlags(image), "--wait", "--wait-ready", "--json"], env)),
    );
    expect(ra?.code, (ra?.stdout ?? "") + (ra?.stderr ?? "") + worker.logs()).toBe(0);
    expect(rb?.code, (rb?.stdout ?? "") + (rb?.stderr ?? "")).toBe(0);
    expect(hits.get(`/good/${image}`)).toBe(1);
    const events = [...jsonLines(ra?.stdout ?? ""), ...jsonLines(rb?.stdout ?? "")];
    const pulling = events.filter((e) => e.phase === "image.pulling");
    expect(pulling.length).toBeGreaterThanOrEqual(3);
    expect(pulling.some((e) => /\d+ of \d+ bytes/.test(String(e.message)))).toBe(true);
    expect(
      events
        .filter((e) => e.phase === "guest.ready")
        .map((e) => e.vm)
        .sort(),
    ).toEqual([a, b].sort());
    for (const n of [a, b]) expect(await domainState(n)).toBe("running");

    // Stored root's and read-only to QEMU, under its name; nothing temporary left.
    const file = path.join(imageDir, `${image}.qcow2`);
    const s = await stat(file);
    expect({ uid: s.uid, mode: s.mode & 0o777 }).toEqual({ uid: 0, mode: 0o644 });
    expect((await readdir(imageDir)).filter((f) => f.startsWith("."))).toEqual([]);
    const after = JSON.parse((await runCli(["images", "ls", "--json"], env)).stdout) as Record<string, unknown>[];
    expect(after.find((i) => i.name === image)).toMatchObject({
      format: "qcow2",
      size: s.size,
      hosts: [worker.hostId],
    });
    expect(Number(after.find((i) => i.name === image)?.virtualSize)).toBeGreaterThan(0);

    for (const n of [a, b]) {
      const d = await runCli(["destroy", n, "--wait"], env);
      expect(d.code, d.stdout + d.stderr).toBe(0);
    }

    // `images rm`: out of the catalogue (the host keeps its file); again: NOT_FOUND.
    expect((await runCli(["images", "rm", image], env)).code).toBe(0);
    expect(JSON.parse((await runCli(["images", "ls", "--json"], env)).stdout)).toEqual([]);
    const again = await runCli(["images", "rm", image], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("NOT_FOUND");
  });

  it("a corrupted download is refused with IMAGE_CHECKSUM_MISMATCH and leaves no file, temporary or final", async () => {
    const image = `im-bad-${tag}`;
    const imported = await runCli(
      ["images", "import", image, "--url", `${baseUrl}/bad/${image}`, "--sha256", tinySha],
      env,
    );
    expect(imported.code, imported.stderr).toBe(0);
    const name = imName("bad");
    const r = await runCli(["create", "--name", name, ...bootFlags(image), "--wait", "--json"], env);
    expect(r.code).toBe(1);
    const failed = jsonLines(r.stdout).find((e) => e.phase === "failed");
    expect(failed?.error).toMatchObject({ code: "IMAGE_CHECKSUM_MISMATCH", field: "spec.disks.0.backing" });
    // Refused at once: a checksum mismatch is not retried.
    expect(hits.get(`/bad/${image}`)).toBe(1);
    expect((await readdir(imageDir)).filter((f) => f.includes(image))).toEqual([]);
    expect(await domainState(name)).toBeUndefined();
    expect((await runCli(["images", "rm", image], env)).code).toBe(0);
  });

  it("images import --file --host: the host's worker checksums the file, stores it 0644 and catalogues it", async () => {
    const image = `im-file-${tag}`;
    const source = path.join(testRoot, `${image}-src.qcow2`);
    await copyFile(path.join(inject("imageDir"), "tiny.qcow2"), source);
    try {
      const wrong = await runCli(
        ["images", "import", image, "--file", source, "--host", worker.hostId, "--sha256", "0".repeat(64)],
        env,
      );
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain("IMAGE_CHECKSUM_MISMATCH");
      const r = await runCli(["images", "import", image, "--file", source, "--host", worker.hostId, "--json"], env);
      expect(r.code, r.stdout + r.stderr + worker.logs()).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({
        name: image,
        sha256: tinySha,
        format: "qcow2",
        source: { kind: "file", host: worker.hostId, path: source },
      });
      const s = await stat(path.join(imageDir, `${image}.qcow2`));
      expect({ uid: s.uid, mode: s.mode & 0o777 }).toEqual({ uid: 0, mode: 0o644 });
      const listed = JSON.parse((await runCli(["images", "ls", "--json"], env)).stdout) as Record<string, unknown>[];
      expect(listed.find((i) => i.name === image)?.hosts).toEqual([worker.hostId]);
      // A bad flag names the flag's field; nothing is asked of any host.
      const bad = await runCli(["images", "import", image, "--file", "relative.qcow2", "--host", worker.hostId], env);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("file");
      // The same commands through the HTTP API (VIRTFLEET_API_URL): a tenant's token reads, only admin removes.
      const api = new ApiServer({
        redisUrl: fleet.redisUrl,
        prefix: fleet.prefix,
        tokens: new TokenStore([
          { id: "im-admin", token: ADMIN_TOKEN, scopes: ["admin"], tenant: "ops" },
          { id: "im-reader", token: READER_TOKEN, scopes: ["vms:read"], tenant: "acme" },
        ]),
        logger: pino({ level: "silent" }),
        port: 0,
      });
      await api.start();
      try {
        const via = (token: string) => ({ VIRTFLEET_API_URL: api.url, VIRTFLEET_TOKEN: token });
        const read = await runCli(["images", "ls", "--json"], via(READER_TOKEN));
        expect(read.code, read.stderr).toBe(0);
        expect(JSON.parse(read.stdout)).toEqual([expect.objectContaining({ name: image, sha256: tinySha })]);
        const refused = await runCli(["images", "rm", image], via(READER_TOKEN));
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain("FORBIDDEN");
        expect((await runCli(["images", "rm", image], via(ADMIN_TOKEN))).code).toBe(0);
      } finally {
        await api.close();
      }
      expect(JSON.parse((await runCli(["images", "ls", "--json"], env)).stdout)).toEqual([]);
    } finally {
      await rm(source, { force: true });
    }
  });
});
