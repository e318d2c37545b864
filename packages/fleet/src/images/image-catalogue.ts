import { randomUUID } from "node:crypto";
import {
  ErrorCode,
  type ImageFileRequest,
  ImageFileResult,
  ImageImportInput,
  ImageName,
  ImageRecord,
  type ImageView,
  parseOrThrow,
  VirtfleetError,
} from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";

/** How long `importFile` waits for the host's worker to checksum the file, by default. */
export const DEFAULT_IMAGE_FILE_TIMEOUT_MS = 600_000;

/**
 * The fleet-wide image catalogue: one record per image (a hash of JSON records, parsed when read)
 * and, per image, the set of hosts that hold it. Workers add themselves once they hold a file
 * (pulled, or an operator's file) and take themselves out when they evict it.
 */
export class ImageCatalogue {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  async get(name: string): Promise<ImageRecord | undefined> {
    const raw = await this.#redis.hget(this.#keys.images(), name);
    if (raw === null) return undefined;
    const parsed = ImageRecord.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : undefined;
  }

  /** Every catalogued image with the hosts that hold it, sorted by name. */
  async list(): Promise<ImageView[]> {
    const all = await this.#redis.hgetall(this.#keys.images());
    const records = Object.values(all)
      .map((raw) => ImageRecord.safeParse(JSON.parse(raw)))
      .flatMap((p) => (p.success ? [p.data] : []))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const hosts = await Promise.all(records.map((r) => this.#redis.smembers(this.#keys.imageHosts(r.name))));
    return records.map((r, i) => ({ ...r, hosts: (hosts[i] ?? []).sort() }));
  }

  /** Names of the images any host may pull (their source is a URL). */
  async pullable(): Promise<string[]> {
    const all = await this.#redis.hgetall(this.#keys.images());
    return Object.values(all)
      .map((raw) => ImageRecord.safeParse(JSON.parse(raw)))
      .flatMap((p) => (p.success && p.data.source.kind === "url" ? [p.data.name] : []));
  }

  /**
   * Catalogues an image that workers pull from a URL (`images import NAME --url`). Importing the
   * same name again with the same URL and checksum changes nothing; anything else is NAME_CLASH
   * (remove it first).
   */
  async importUrl(input: unknown): Promise<ImageRecord> {
    const i = parseOrThrow(ImageImportInput, input);
    if (i.url === undefined) {
      throw new VirtfleetError("INVALID_SPEC", "a URL import needs a url", { field: "url" });
    }
    const record: ImageRecord = {
      name: i.name,
      source: { kind: "url", url: i.url },
      ...(i.sha256 === undefined ? {} : { sha256: i.sha256 }),
      createdAt: new Date().toISOString(),
    };
    const added = await this.#redis.hsetnx(this.#keys.images(), i.name, JSON.stringify(record));
    if (added === 1) return record;
    const existing = await this.get(i.name);
    if (
      existing?.source.kind === "url" &&
      existing.source.url === i.url &&
      (i.sha256 === undefined || existing.sha256 === i.sha256)
    ) {
      return existing;
    }
    throw new VirtfleetError("NAME_CLASH", `an image named "${i.name}" is already catalogued; remove it first`, {
      field: "name",
    });
  }

  /** Writes a record (a worker filling in what it learnt of the file: format, sizes, checksum). */
  async put(record: ImageRecord): Promise<void> {
    await this.#redis.hset(this.#keys.images(), record.name, JSON.stringify(ImageRecord.parse(record)));
  }

  async addHost(name: string, hostId: string): Promise<void> {
    await this.#redis.sadd(this.#keys.imageHosts(name), hostId);
  }

  async removeHost(name: string, hostId: string): Promise<void> {
    await this.#redis.srem(this.#keys.imageHosts(name), hostId);
  }

  /** Records that a host used an image now (or at `atMs`), for least-recently-used eviction. */
  async markUsed(hostId: string, name: string, atMs = Date.now()): Promise<void> {
    await this.#redis.zadd(this.#keys.imageUse(hostId), atMs, name);
  }

  /** When each image was last used on a host (ms), as markUsed recorded it. */
  async lastUsed(hostId: string): Promise<Map<string, number>> {
    const flat = await this.#redis.zrange(this.#keys.imageUse(hostId), 0, -1, "WITHSCORES");
    const out = new Map<string, number>();
    for (let i = 0; i + 1 < flat.length; i += 2) out.set(flat[i] as string, Number(flat[i + 1]));
    return out;
  }

  async forgetUse(hostId: string, name: string): Promise<void> {
    await this.#redis.zrem(this.#keys.imageUse(hostId), name);
  }

  /**
   * Takes an image out of the catalogue (hosts keep the files they hold; nothing pulls it again).
   * NOT_FOUND when it is not catalogued.
   */
  async remove(name: string): Promise<void> {
    parseOrThrow(ImageName, name, "name");
    const [[, removed] = []] =
      (await this.#redis.multi().hdel(this.#keys.images(), name).del(this.#keys.imageHosts(name)).exec()) ?? [];
    if (removed !== 1) throw new VirtfleetError("NOT_FOUND", `no image "${name}" in the catalogue`, { field: "name" });
  }

  /**
   * Asks the worker of `hostId` to checksum a file it holds and catalogue it as `name`; waits for its
   * answer. HOST_NOT_FOUND when no worker of that host listens; COMMAND_TIMEOUT after `timeoutMs`.
   */
  async importFile(input: unknown, timeoutMs = DEFAULT_IMAGE_FILE_TIMEOUT_MS): Promise<ImageRecord> {
    const i = parseOrThrow(ImageImportInput, input);
    if (i.file === undefined || i.host === undefined) {
      throw new VirtfleetError("INVALID_SPEC", "a file import needs a file and a host", { field: "file" });
    }
    if ((await this.get(i.name)) !== undefined) {
      throw new VirtfleetError("NAME_CLASH", `an image named "${i.name}" is already catalogued; remove it first`, {
        field: "name",
      });
    }
    const request: ImageFileRequest = {
      id: randomUUID(),
      name: i.name,
      path: i.file,
      ...(i.sha256 === undefined ? {} : { sha256: i.sha256 }),
    };
    const listeners = await this.#redis.publish(this.#keys.imageChannel(i.host), JSON.stringify(request));
    if (listeners === 0) {
      throw new VirtfleetError("HOST_NOT_FOUND", `no worker of host "${i.host}" is up to import the file`, {
        field: "host",
      });
    }
    const replyKey = this.#keys.imageReply(request.id);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const raw = await this.#redis.get(replyKey);
      if (raw !== null) {
        await this.#redis.del(replyKey);
        const parsed = ImageFileResult.safeParse(JSON.parse(raw));
        if (!parsed.success) throw new VirtfleetError("INTERNAL", `host "${i.host}" answered with a bad import result`);
        const { record, error } = parsed.data;
        if (error !== undefined) {
          const code = ErrorCode.safeParse(error.code);
          throw new VirtfleetError(
            code.success ? code.data : "INTERNAL",
            `host "${i.host}": ${error.message}`,
            error.field === undefined ? {} : { field: error.field },
          );
        }
        if (record === undefined) throw new VirtfleetError("INTERNAL", `host "${i.host}" registered nothing`);
        return record;
      }
      if (Date.now() > deadline) {
        throw new VirtfleetError(
          "COMMAND_TIMEOUT",
          `host "${i.host}" did not finish importing the file within ${Math.round(timeoutMs / 1000)} s`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** A worker's answer to a file import; kept a minute for the asker to read. */
  async replyFile(requestId: string, result: ImageFileResult): Promise<void> {
    await this.#redis.set(this.#keys.imageReply(requestId), JSON.stringify(result), "PX", 60_000);
  }
}
