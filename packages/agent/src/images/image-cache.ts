import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { chmod, copyFile, open, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import {
  hasImage,
  type ImageFileRequest,
  type ImageFileResult,
  type ImageRecord,
  type Phase,
  toErrorInfo,
  VirtfleetError,
  type VmSpec,
} from "@virtfleet/core";
import type { ImageCatalogue } from "@virtfleet/fleet";
import {
  type CommandRunner,
  type HostPaths,
  type ImageKind,
  parseQemuImgInfo,
  qemuImgInfoArgs,
} from "@virtfleet/hypervisor";
import { NameLocks } from "../name-locks.js";
import { pickEvictions } from "./eviction.js";

export type PullReport = (phase: Phase, message: string) => Promise<void>;

/** The worker's default image cache limit (`VIRTFLEET_IMAGE_CACHE_GB`): 0 means no limit. */
export const DEFAULT_IMAGE_CACHE_GB = 0;

/** An image used this recently is never evicted (a create resolved it and is making its disk). */
export const DEFAULT_EVICTION_GRACE_MS = 10 * 60_000;

export interface ImageCacheOptions {
  paths: HostPaths;
  runner: CommandRunner;
  catalogue: ImageCatalogue;
  hostId: string;
  /** When the image store passes this many bytes, pulled images are evicted, least recently used first. Default: no limit. */
  limitBytes?: number;
  /** Default DEFAULT_EVICTION_GRACE_MS. */
  evictionGraceMs?: number;
  /** `qemu-img info`. Default 60 s. */
  qemuImgMs?: number;
  /** Warnings (eviction failures) go here. */
  warn?: (message: string, error?: unknown) => void;
}

/** Where a pulled image of each kind is stored (its file name's suffix), by its format. */
function suffixFor(kind: ImageKind, format: string): string {
  switch (kind) {
    case "backing":
      return format === "qcow2" ? ".qcow2" : ".raw";
    case "cdrom":
      return ".iso";
    case "kernel":
      return ".vmlinuz";
    case "initrd":
      return ".initrd";
  }
}

/** The images a spec names, with their kind and field. */
function imagesOf(spec: VmSpec): { name: string; kind: ImageKind; field: string }[] {
  const out: { name: string; kind: ImageKind; field: string }[] = spec.disks.flatMap((d, i) =>
    d.backing === undefined ? [] : [{ name: d.backing, kind: "backing" as const, field: `spec.disks.${i}.backing` }],
  );
  const install = spec.install;
  if (install.method === "cdrom") out.push({ name: install.image, kind: "cdrom", field: "spec.install.image" });
  if (install.method === "kernel") {
    out.push({ name: install.kernel, kind: "kernel", field: "spec.install.kernel" });
    if (install.initrd !== undefined) out.push({ name: install.initrd, kind: "initrd", field: "spec.install.initrd" });
  }
  return out;
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

/**
 * A host's side of the image catalogue: pulls a catalogued image the first time a VM here needs it
 * (once at a time per image, into a temporary name, renamed only once its SHA-256 matches; root's
 * and 0644: QEMU reads it, never writes it), registers the host in the catalogue, and evicts pulled
 * images least recently used first when the store passes its limit, never one a VM's disk is backed by.
 */
export class ImageCache {
  readonly #o: ImageCacheOptions;
  readonly #locks = new NameLocks();

  constructor(options: ImageCacheOptions) {
    this.#o = options;
  }

  /** Makes every image the spec names present on this host, pulling catalogued ones it lacks. */
  async ensureAll(spec: VmSpec, report: PullReport, signal?: AbortSignal): Promise<void> {
    for (const image of imagesOf(spec)) await this.ensure(image.name, image.kind, image.field, report, signal);
  }

  /**
   * Makes one image present: a file already here is marked used; else a catalogued image with a URL
   * is pulled (IMAGE_CHECKSUM_MISMATCH when its bytes do not match, leaving no file). An image the
   * catalogue does not know is left for the caller to find missing.
   */
  async ensure(name: string, kind: ImageKind, field: string, report: PullReport, signal?: AbortSignal): Promise<void> {
    const release = await this.#locks.acquire(name);
    try {
      const local = await this.#o.paths.resolveImage(name, kind, field).catch(() => undefined);
      if (local !== undefined) {
        await this.#o.catalogue.markUsed(this.#o.hostId, name);
        return;
      }
      const record = await this.#o.catalogue.get(name);
      if (record === undefined || record.source.kind !== "url") return;
      await this.#pull(record, record.source.url, kind, field, report, signal);
    } finally {
      release();
    }
    await this.evict().catch((error: unknown) => this.#o.warn?.("image eviction failed", error));
  }

  async #pull(
    record: ImageRecord,
    url: string,
    kind: ImageKind,
    field: string,
    report: PullReport,
    signal?: AbortSignal,
  ): Promise<void> {
    const { imageDir } = this.#o.paths;
    const temp = path.join(imageDir, `.${record.name}.pull-${randomUUID()}`);
    try {
      let response: Response;
      try {
        response = await fetch(url, { redirect: "follow", ...(signal === undefined ? {} : { signal }) });
      } catch (error) {
        throw new VirtfleetError(
          "COMMAND_FAILED",
          `cannot fetch image "${record.name}" from ${url}: ${(error as Error).message}`,
          {
            field,
            cause: error,
            retryable: true,
          },
        );
      }
      if (!response.ok || response.body === null) {
        throw new VirtfleetError(
          "COMMAND_FAILED",
          `fetching image "${record.name}" from ${url}: HTTP ${response.status}`,
          {
            field,
            retryable: response.status >= 500,
          },
        );
      }
      const header = Number(response.headers.get("content-length"));
      const total = Number.isFinite(header) && header > 0 ? header : undefined;
      const of = total === undefined ? "" : ` of ${mib(total)}`;
      await report("image.pulling", `pulling image ${record.name}: 0 bytes${of} (${url})`);
      const hash = createHash("sha256");
      let done = 0;
      let nextStep = 1;
      const file = await open(temp, "wx", 0o600);
      try {
        for await (const chunk of Readable.fromWeb(response.body as WebReadableStream<Uint8Array>)) {
          const bytes = chunk as Buffer;
          hash.update(bytes);
          await file.write(bytes);
          done += bytes.length;
          // Up to four reports along the way: at each quarter of the total.
          if (total !== undefined && nextStep < 4 && done >= (total * nextStep) / 4) {
            while (nextStep < 4 && done >= (total * nextStep) / 4) nextStep++;
            await report("image.pulling", `pulling image ${record.name}: ${done} of ${total} bytes`);
          }
        }
        await file.sync();
      } finally {
        await file.close();
      }
      const sha256 = hash.digest("hex");
      if (record.sha256 !== undefined && sha256 !== record.sha256) {
        throw new VirtfleetError(
          "IMAGE_CHECKSUM_MISMATCH",
          `image "${record.name}" from ${url} has SHA-256 ${sha256}, the catalogue says ${record.sha256}; not used`,
          { field },
        );
      }
      const info = await this.#info(temp);
      const final = path.join(imageDir, record.name + suffixFor(kind, info.format));
      // Root's (the worker's), readable by everyone, written by no one but root: never QEMU's.
      await chmod(temp, 0o644);
      await rename(temp, final);
      await report("image.pulling", `pulled image ${record.name}: ${done} of ${total ?? done} bytes, SHA-256 verified`);
      await this.#o.catalogue.put({
        ...record,
        sha256,
        format: info.format,
        virtualSize: info["virtual-size"],
        size: done,
      });
      await this.#o.catalogue.addHost(record.name, this.#o.hostId);
      await this.#o.catalogue.markUsed(this.#o.hostId, record.name);
    } finally {
      await rm(temp, { force: true });
    }
  }

  async #info(file: string) {
    const { stdout } = await this.#o.runner.run("qemu-img", qemuImgInfoArgs(file), {
      timeoutMs: this.#o.qemuImgMs ?? 60_000,
    });
    const info = parseQemuImgInfo(stdout, file);
    // A base image that itself points at a backing file could make QEMU read any file on the host.
    if (info["backing-filename"] !== undefined) {
      throw new VirtfleetError("INVALID_SPEC", `image ${file} has a backing file of its own; refused`, {
        field: "image",
      });
    }
    return info;
  }

  /**
   * An operator's file on this host, checksummed and catalogued as `name`: a file outside the image
   * store is copied into it (root's, 0644) under the name; one inside is used where it is.
   */
  async importFile(request: ImageFileRequest): Promise<ImageFileResult> {
    const { hostId } = this.#o;
    try {
      const source = path.resolve(request.path);
      const s = await stat(source).catch(() => undefined);
      if (s === undefined || !s.isFile()) {
        throw new VirtfleetError("NOT_FOUND", `no file ${source} on host ${hostId}`, { field: "file" });
      }
      const sha256 = await sha256File(source);
      if (request.sha256 !== undefined && request.sha256 !== sha256) {
        throw new VirtfleetError(
          "IMAGE_CHECKSUM_MISMATCH",
          `file ${source} has SHA-256 ${sha256}, not ${request.sha256}`,
          { field: "sha256" },
        );
      }
      const info = await this.#info(source);
      const { imageDir } = this.#o.paths;
      if (path.dirname(source) !== imageDir || !path.basename(source).startsWith(request.name)) {
        const kind: ImageKind = info.format === "qcow2" || info.format === "raw" ? "backing" : "cdrom";
        const final = path.join(imageDir, request.name + suffixFor(kind, info.format));
        const temp = path.join(imageDir, `.${request.name}.import-${randomUUID()}`);
        try {
          await copyFile(source, temp);
          if ((await sha256File(temp)) !== sha256) {
            throw new VirtfleetError("IMAGE_CHECKSUM_MISMATCH", `file ${source} changed while it was copied`, {
              field: "file",
            });
          }
          await chmod(temp, 0o644);
          await rename(temp, final);
        } finally {
          await rm(temp, { force: true });
        }
      }
      const record: ImageRecord = {
        name: request.name,
        source: { kind: "file", host: hostId, path: source },
        sha256,
        format: info.format,
        virtualSize: info["virtual-size"],
        size: s.size,
        createdAt: new Date().toISOString(),
      };
      await this.#o.catalogue.put(record);
      await this.#o.catalogue.addHost(request.name, hostId);
      return { hostId, record };
    } catch (error) {
      const info = toErrorInfo(error);
      return {
        hostId,
        error: { code: info.code, message: info.message, ...(info.field === undefined ? {} : { field: info.field }) },
      };
    }
  }

  /**
   * Brings the catalogue's host sets in line with this host's image store: this host is listed for
   * exactly the catalogued images it holds (files copied or deleted by hand, a restart). Returns the
   * names added and removed.
   */
  async sync(): Promise<{ added: string[]; removed: string[] }> {
    const { catalogue, hostId } = this.#o;
    const files = await this.#o.paths.listImages();
    const added: string[] = [];
    const removed: string[] = [];
    for (const image of await catalogue.list()) {
      const holds = hasImage(files, image.name);
      const listed = image.hosts.includes(hostId);
      if (holds && !listed) {
        await catalogue.addHost(image.name, hostId);
        added.push(image.name);
      } else if (!holds && listed) {
        await catalogue.removeHost(image.name, hostId);
        removed.push(image.name);
      }
    }
    return { added, removed };
  }

  /**
   * When the image store passes its limit, removes pulled images (catalogued with a URL, so they can
   * be pulled again), least recently used first, until it is under: never one a VM's disk is backed
   * by, never one used within the grace period. Operators' own files are never removed. Returns the
   * names evicted.
   */
  async evict(): Promise<string[]> {
    const limit = this.#o.limitBytes;
    if (limit === undefined) return [];
    const { imageDir } = this.#o.paths;
    const entries = await readdir(imageDir, { withFileTypes: true });
    const files = await Promise.all(
      entries
        .filter((e) => e.isFile())
        .map(async (e) => {
          const file = path.join(imageDir, e.name);
          const s = await stat(file);
          return { file, name: e.name, size: s.size, mtimeMs: s.mtimeMs };
        }),
    );
    const total = files.reduce((sum, f) => sum + f.size, 0);
    if (total <= limit) return [];
    const pullable = await this.#o.catalogue.pullable();
    // Last use as recorded in Redis (images are never touched on disk); never recorded: the file's mtime.
    const used = await this.#o.catalogue.lastUsed(this.#o.hostId);
    const inUse = await this.backingFilesInUse();
    const graceMs = this.#o.evictionGraceMs ?? DEFAULT_EVICTION_GRACE_MS;
    const now = Date.now();
    const candidates = files.flatMap((f) => {
      const name = [...pullable].find((p) => hasImage([f.name], p));
      if (f.name.startsWith(".") || name === undefined) return [];
      const usedAt = used.get(name) ?? f.mtimeMs;
      if (inUse.has(f.file) || now - usedAt < graceMs) return [];
      return [{ ...f, usedAt, image: name }];
    });
    const evicted: string[] = [];
    for (const victim of pickEvictions(candidates, total, limit)) {
      await rm(victim.file, { force: true });
      await this.#o.catalogue.removeHost(victim.image, this.#o.hostId);
      await this.#o.catalogue.forgetUse(this.#o.hostId, victim.image);
      evicted.push(victim.image);
    }
    return evicted;
  }

  /** The image files this host's VM disks are backed by (read from each disk's header by qemu-img). */
  async backingFilesInUse(): Promise<Set<string>> {
    const { paths } = this.#o;
    const used = new Set<string>();
    for (const vm of await paths.listVmDirs()) {
      const dir = paths.vmDir(vm);
      const disks = (await readdir(dir).catch(() => [] as string[])).filter((f) => /^disk\d+\.qcow2$/.test(f));
      for (const disk of disks) {
        const file = path.join(dir, disk);
        try {
          const { stdout } = await this.#o.runner.run("qemu-img", qemuImgInfoArgs(file), {
            timeoutMs: this.#o.qemuImgMs ?? 60_000,
          });
          const backing = parseQemuImgInfo(stdout, file)["backing-filename"];
          if (backing !== undefined) used.add(path.resolve(dir, backing));
        } catch (error) {
          // A disk that cannot be read may be backed by anything: evict nothing this time.
          throw new VirtfleetError("COMMAND_FAILED", `cannot tell what ${file} is backed by; evicting nothing`, {
            cause: error,
          });
        }
      }
    }
    return used;
  }
}

/** The SHA-256 of a file, as hex. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
