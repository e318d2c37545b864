import type { Redis } from "ioredis";

/**
 * Runs `issue` with `redis`'s socket corked, so the commands it sends before the event loop's next
 * turn (the awaits inside a BullMQ add included) leave in ONE write instead of one each: a create
 * call that adds a lone job to each of 500 hosts' queues (a big fleet) costs one system call here and
 * one read in Redis, not 500 of each. The socket is uncorked at the loop's next turn (setImmediate:
 * after every pending promise callback). When Redis is not connected the commands wait in ioredis's
 * own queue as always.
 */
export function sendTogether<T>(redis: Redis, issue: () => T): T {
  const stream = redis.status === "ready" ? redis.stream : undefined;
  stream?.cork();
  try {
    return issue();
  } finally {
    if (stream !== undefined) setImmediate(() => stream.uncork());
  }
}
