import { execFile } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { ImageCatalogue, Keys } from "@virtfleet/fleet";
import { ExecaRunner, HostPaths } from "@virtfleet/hypervisor";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { ImageCache } from "./image-cache.js";

const run = promisify(execFile);

let root: string;
let base: Buffer;
let baseSha: string;
let server: Server;
let url: string;
/** GET requests per path. */
const hits = new Map<string, number>();

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), "im-cache-"));
  const file = path.join(root, "base.qcow2");
  await run("qemu-img", ["create", "-q", "-f", "qcow2", file, "64M"]);
  base = await readFile(file);
  baseSha = createHash("sha256").update(base).digest("hex");
  server = createServer((req, res) => {
    const p = req.url ?? "/";
    hits.set(p, (hits.get(p) ?? 0) + 1);
    // Served in four slow pieces, so a second pull would overlap the first.
    const body = p.startsWith("/bad") ? Buffer.concat([base.subarray(0, base.length - 1), Buffer.from([1])]) : base;
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
    const quarter = Math.ceil(body.length / 4);
    let i = 0;
    const next = () => {
      if (i >= 4) return res.end();
      res.write(body.subarray(i * quarter, (i + 1) * quarter));
      i++;
      setTimeout(next, 50);
    };
    next();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await rm(root, { recursive: true, force: true });
});

async function setup(redisUrl: string, prefix: string, limitBytes?: number) {
  const dir = path.join(root, randomUUID());
  const paths = new HostPaths(path.join(dir, "vms"), path.join(dir, "images"));
  await mkdir(paths.storageDir, { recursive: true });
  await mkdir(paths.imageDir, { recursive: true, mode: 0o755 });
  const redis = new Redis(redisUrl);
  const catalogue = new ImageCatalogue(redis, new Keys(prefix));
  const cache = new ImageCache({
    paths,
    runner: new ExecaRunner(),
    catalogue,
    hostId: "im-host",
    ...(limitBytes === undefined ? {} : { limitBytes }),
  });
  const events: { phase: string; message: string }[] = [];
  const report = async (phase: string, message: string) => {
    events.push({ phase, message });
  };
  return { paths, redis, catalogue, cache, events, report };
}

describe("ImageCache: pulling catalogued images", () => {
  test("pulls a catalogued image once, reports bytes, verifies its SHA-256, stores it root's and 0644", async ({
    redisUrl,
    prefix,
  }) => {
    const { paths, redis, catalogue, cache, events, report } = await setup(redisUrl, prefix);
    try {
      const name = `im-good-${randomUUID().slice(0, 6)}`;
      await catalogue.importUrl({ name, url: `${url}/good/${name}`, sha256: baseSha.toUpperCase() });
      // Two creates needing it at once: one download.
      await Promise.all([
        cache.ensure(name, "backing", "spec.disks.0.backing", report),
        cache.ensure(name, "backing", "spec.disks.0.backing", report),
      ]);
      expect(hits.get(`/good/${name}`)).toBe(1);
      const file = path.join(paths.imageDir, `${name}.qcow2`);
      expect(
        createHash("sha256")
          .update(await readFile(file))
          .digest("hex"),
      ).toBe(baseSha);
      const s = await stat(file);
      expect({ uid: s.uid, mode: s.mode & 0o777 }).toEqual({ uid: process.getuid?.(), mode: 0o644 });
      expect(await readdir(paths.imageDir)).toEqual([`${name}.qcow2`]);
      const pulling = events.filter((e) => e.phase === "image.pulling");
      expect(pulling.length).toBeGreaterThanOrEqual(3);
      expect(pulling.some((e) => e.message.includes(`of ${base.length} bytes`))).toBe(true);
      const [view] = await catalogue.list();
      expect(view).toMatchObject({
        name,
        sha256: baseSha,
        format: "qcow2",
        virtualSize: 64 * 2 ** 20,
        size: base.length,
        hosts: ["im-host"],
      });
    } finally {
      redis.disconnect();
    }
  });

  test("a download whose bytes do not match is IMAGE_CHECKSUM_MISMATCH and leaves no file", async ({
    redisUrl,
    prefix,
  }) => {
    const { paths, redis, catalogue, cache, report } = await setup(redisUrl, prefix);
    try {
      await catalogue.importUrl({ name: "im-bad", url: `${url}/bad`, sha256: baseSha });
      await expect(cache.ensure("im-bad", "backing", "spec.disks.0.backing", report)).rejects.toMatchObject({
        code: "IMAGE_CHECKSUM_MISMATCH",
        field: "spec.disks.0.backing",
      });
      expect(await readdir(paths.imageDir)).toEqual([]);
      expect((await catalogue.list())[0]?.hosts).toEqual([]);
    } finally {
      redis.disconnect();
    }
  });

  test("eviction: least recently used pulled image first, never one a VM disk is backed by, never an operator's file", async ({
    redisUrl,
    prefix,
  }) => {
    // Room for two of the three pulled images (plus the operator's small file).
    const { paths, redis, catalogue, cache, report } = await setup(redisUrl, prefix, base.length * 2 + 10_000);
    try {
      for (const n of ["im-a", "im-b", "im-c"])
        await catalogue.importUrl({ name: n, url: `${url}/good/${prefix}/${n}` });
      await writeFile(path.join(paths.imageDir, "operator.raw"), Buffer.alloc(4096));
      // im-a is the oldest used but a VM's disk is backed by it; im-b is next.
      const old = (minutes: number) => new Date(Date.now() - minutes * 60_000);
      for (const n of ["im-a", "im-b"]) await cache.ensure(n, "backing", "f", report);
      expect(await cache.evict()).toEqual([]); // under the limit: nothing goes
      const vmDir = path.join(paths.storageDir, "im-vm");
      await mkdir(vmDir);
      await run("qemu-img", [
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        path.join(paths.imageDir, "im-a.qcow2"),
        path.join(vmDir, "disk0.qcow2"),
      ]);
      await catalogue.markUsed("im-host", "im-a", old(60).getTime());
      await catalogue.markUsed("im-host", "im-b", old(30).getTime());
      await utimes(path.join(paths.imageDir, "operator.raw"), old(90), old(90));
      // Pulling im-c passes the limit: im-b goes (im-a is in use, operator.raw is not the cache's).
      await cache.ensure("im-c", "backing", "f", report);
      expect((await readdir(paths.imageDir)).sort()).toEqual(["im-a.qcow2", "im-c.qcow2", "operator.raw"]);
      const hosts = Object.fromEntries((await catalogue.list()).map((i) => [i.name, i.hosts]));
      expect(hosts).toEqual({ "im-a": ["im-host"], "im-b": [], "im-c": ["im-host"] });
    } finally {
      redis.disconnect();
    }
  });

  test("an operator's file is checksummed, copied into the store 0644 and catalogued; a wrong checksum is refused", async ({
    redisUrl,
    prefix,
  }) => {
    const { paths, redis, catalogue, cache } = await setup(redisUrl, prefix);
    try {
      const source = path.join(root, `${randomUUID()}.qcow2`);
      await writeFile(source, base);
      const bad = await cache.importFile({ id: randomUUID(), name: "im-file", path: source, sha256: "0".repeat(64) });
      expect(bad.error).toMatchObject({ code: "IMAGE_CHECKSUM_MISMATCH", field: "sha256" });
      expect(await readdir(paths.imageDir)).toEqual([]);
      const ok = await cache.importFile({ id: randomUUID(), name: "im-file", path: source, sha256: baseSha });
      expect(ok.record).toMatchObject({ name: "im-file", sha256: baseSha, format: "qcow2", source: { kind: "file" } });
      const s = await stat(path.join(paths.imageDir, "im-file.qcow2"));
      expect(s.mode & 0o777).toBe(0o644);
      expect((await catalogue.list())[0]?.hosts).toEqual(["im-host"]);
    } finally {
      redis.disconnect();
    }
  });

  test("sync lists this host for exactly the catalogued images it holds", async ({ redisUrl, prefix }) => {
    const { paths, redis, catalogue, cache } = await setup(redisUrl, prefix);
    try {
      await catalogue.importUrl({ name: "im-here", url: `${url}/good/${prefix}/here` });
      await catalogue.importUrl({ name: "im-gone", url: `${url}/good/${prefix}/gone` });
      await catalogue.addHost("im-gone", "im-host");
      await writeFile(path.join(paths.imageDir, "im-here.qcow2"), base);
      expect(await cache.sync()).toEqual({ added: ["im-here"], removed: ["im-gone"] });
      const hosts = Object.fromEntries((await catalogue.list()).map((i) => [i.name, i.hosts]));
      expect(hosts).toEqual({ "im-here": ["im-host"], "im-gone": [] });
      expect(await cache.sync()).toEqual({ added: [], removed: [] });
    } finally {
      redis.disconnect();
    }
  });
});
