import { createHash, randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { DEFAULT_SESSION_TTL_SEC } from "./defaults.js";

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/**
 * Dashboard sessions in Redis: `<prefix>:ui-session:<sha256(session id)>` → the SHA-256 of the token
 * that signed in, with a TTL. Neither the session id nor the token is stored in clear.
 */
export class SessionStore {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly ttlSec: number;

  constructor(redis: Redis, prefix: string, ttlSec = DEFAULT_SESSION_TTL_SEC) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.ttlSec = ttlSec;
  }

  #key(id: string): string {
    return `${this.#prefix}:ui-session:${sha256(id)}`;
  }

  /** A new session for the token of this SHA-256; returns the session id (the cookie's value). */
  async create(tokenSha256: string): Promise<string> {
    const id = randomBytes(32).toString("base64url");
    await this.#redis.set(this.#key(id), tokenSha256, "EX", this.ttlSec);
    return id;
  }

  /** The token SHA-256 of a live session, or undefined (unknown, expired or signed out). */
  async tokenOf(id: string): Promise<string | undefined> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
    return (await this.#redis.get(this.#key(id))) ?? undefined;
  }

  async remove(id: string): Promise<void> {
    await this.#redis.del(this.#key(id));
  }
}
