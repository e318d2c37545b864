import { createHash } from "node:crypto";
import { type Keys, LuaCommand } from "@virtfleet/fleet";
import type { Redis } from "ioredis";
import { DEFAULT_IDEMPOTENCY_TTL_SEC } from "./defaults.js";
import { problem } from "./problem.js";

export interface StoredAnswer {
  status: number;
  body: unknown;
}

const PENDING = "pending";

/** Idempotency answers one tenant keeps at once: storing one more drops the oldest. */
export const DEFAULT_MAX_IDEMPOTENCY_KEYS = 256;

/** Records a stored answer and trims the tenant's set (see the file's header). */
const TRACK = new LuaCommand(new URL("./commands/track-idempotency-1.lua", import.meta.url));

/**
 * `Idempotency-Key`: the first answer to a key is stored (a day by default) and given back to every
 * retry with the same request; the same key with another request is IDEMPOTENCY_CONFLICT. A tenant
 * keeps at most `maxKeys` answers (default DEFAULT_MAX_IDEMPOTENCY_KEYS): storing one more drops its
 * oldest, so what one tenant can make Redis hold is bounded.
 */
export class IdempotencyStore {
  readonly #redis: Redis;
  readonly #keys: Keys;
  readonly #ttlSec: number;
  readonly #maxKeys: number;

  constructor(redis: Redis, keys: Keys, ttlSec = DEFAULT_IDEMPOTENCY_TTL_SEC, maxKeys = DEFAULT_MAX_IDEMPOTENCY_KEYS) {
    this.#redis = redis;
    this.#keys = keys;
    this.#ttlSec = ttlSec;
    this.#maxKeys = maxKeys;
  }

  static fingerprint(method: string, url: string, body: unknown): string {
    return createHash("sha256")
      .update(`${method} ${url}\n${JSON.stringify(body ?? null)}`)
      .digest("hex");
  }

  /**
   * Claims the key for this request. Returns the stored answer of an earlier identical request, or
   * undefined when this request is the first (and must call `complete`).
   */
  async begin(scope: string, key: string, fingerprint: string): Promise<StoredAnswer | undefined> {
    const k = this.#keys.idempotency(scope, key);
    const claimed = await this.#redis.set(k, JSON.stringify({ fingerprint, state: PENDING }), "EX", this.#ttlSec, "NX");
    if (claimed !== null) return undefined;
    const raw = await this.#redis.get(k);
    if (raw === null) return this.begin(scope, key, fingerprint);
    const stored = JSON.parse(raw) as { fingerprint: string; state: string; answer?: StoredAnswer };
    if (stored.fingerprint !== fingerprint) {
      throw problem("IDEMPOTENCY_CONFLICT", "this Idempotency-Key was used with another request", "Idempotency-Key");
    }
    if (stored.state === PENDING || stored.answer === undefined) {
      throw problem(
        "IDEMPOTENCY_CONFLICT",
        "a request with this Idempotency-Key is still being handled; retry",
        "Idempotency-Key",
      );
    }
    return stored.answer;
  }

  async complete(scope: string, key: string, fingerprint: string, answer: StoredAnswer): Promise<void> {
    const k = this.#keys.idempotency(scope, key);
    await this.#redis.set(k, JSON.stringify({ fingerprint, state: "done", answer }), "EX", this.#ttlSec);
    const dropped = (await TRACK.run(
      this.#redis,
      [this.#keys.idempotencyKeys(scope)],
      [k, Date.now(), this.#maxKeys, this.#ttlSec],
    )) as string[];
    if (dropped.length > 0) await this.#redis.unlink(...dropped);
  }

  /** Lets a key be used again after the first request failed in a way worth retrying. */
  async abandon(scope: string, key: string): Promise<void> {
    await this.#redis.del(this.#keys.idempotency(scope, key));
  }
}
