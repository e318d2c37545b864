import { randomUUID } from "node:crypto";
import type { Keys } from "@virtfleet/fleet";
import type { Redis } from "ioredis";

/**
 * The fleet's identity: a UUID set once in Redis (`<prefix>:fleet`, SET NX) and read by every worker
 * at start. Each domain and VM folder a worker makes carries it; a Redis that lost it (emptied,
 * restored from elsewhere, another database or prefix) gets a new one, and nothing made under the
 * old one is ever removed without an operator's word.
 */
export async function ensureFleetId(redis: Redis, keys: Keys): Promise<string> {
  await redis.set(keys.fleet(), randomUUID(), "NX");
  const id = await redis.get(keys.fleet());
  if (id === null || id === "") throw new Error(`the fleet id ${keys.fleet()} vanished from Redis`);
  return id;
}
