import type { TestProject } from "vitest/node";
import { acquireRedis } from "./fixtures/redis-server.js";

/** One Redis for the whole run: REDIS_URL, a container, or a local redis-server on a free port. */
export default async function setup(project: TestProject) {
  const redis = await acquireRedis();
  project.provide("redisUrl", redis.url);
  return async () => {
    await redis.stop();
  };
}
