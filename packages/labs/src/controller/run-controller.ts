import { closeRedis, createRedis, FleetClient, type RedisConfig } from "@virtfleet/fleet";
import type { Logger } from "pino";
import type { LabsDeps } from "../deps.js";
import { createLabsDeps } from "../labs-deps.js";
import { buildControllerLoops, type ControllerLoopsOptions } from "./build-loops.js";
import { Controller } from "./controller.js";

/** LabsDeps over connections of its own, and how to close them. */
export interface LabsRuntime {
  deps: LabsDeps;
  close(): Promise<void>;
  /** Drops the connections at once, without waiting for Redis (a stop with Redis down or frozen). */
  abort(): void;
}

/**
 * Opens what every part of lab environments needs: one Redis connection, the fleet's client, the
 * template and lease stores, power control through the hosts' workers.
 */
export function openLabs(options: { redis: RedisConfig; prefix?: string; logger: Logger; name?: string }): LabsRuntime {
  const redis = createRedis({ config: options.redis, connectionName: options.name ?? "virtfleet-labs" });
  const fleet = new FleetClient({
    redis: options.redis,
    ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
  });
  const labs = createLabsDeps({ redis, fleet, logger: options.logger });
  let closing: Promise<void> | undefined;
  return {
    deps: labs.deps,
    close: () => {
      closing ??= (async () => {
        await labs.close().catch(() => undefined);
        await fleet.close().catch(() => undefined);
        await closeRedis(redis);
      })();
      return closing;
    },
    abort: () => {
      redis.disconnect();
      void fleet.close().catch(() => undefined);
    },
  };
}

/** How long a controller may take to stop before its connections are dropped (its lock then expires). */
export const CONTROLLER_CLOSE_MS = 3000;

/** Whether `work` settled within `ms` (never throws). */
async function settledWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export interface RunningController {
  controller: Controller;
  runtime: LabsRuntime;
  /** Closes the controller (gives its lock up), then its connections. Safe to call twice. */
  close(): Promise<void>;
}

/** Starts the fleet's controller (elected; runs buildControllerLoops' loops while it holds the lock). */
export async function startController(options: {
  redis: RedisConfig;
  prefix?: string;
  logger: Logger;
  lockMs?: number;
  loops?: ControllerLoopsOptions;
  /** How long close may take before the connections are dropped. Default CONTROLLER_CLOSE_MS. */
  closeTimeoutMs?: number;
}): Promise<RunningController> {
  const logger = options.logger.child({ component: "controller" });
  const runtime = openLabs({ ...options, logger, name: "virtfleet-controller" });
  const controller = new Controller({
    redis: runtime.deps.redis,
    keys: runtime.deps.keys,
    logger,
    loops: buildControllerLoops(runtime.deps, options.loops),
    ...(options.lockMs === undefined ? {} : { lockMs: options.lockMs }),
  });
  await controller.start();
  let closing: Promise<void> | undefined;
  return {
    controller,
    runtime,
    close: () => {
      // Time-boxed: with Redis down or frozen neither the lock's release nor a running tick ends; the
      // connections are then dropped and the lock expires by itself (another controller takes over).
      closing ??= (async () => {
        const closed = await settledWithin(
          controller.close().then(() => runtime.close()),
          options.closeTimeoutMs ?? CONTROLLER_CLOSE_MS,
        );
        if (!closed) {
          logger.warn(
            "controller: Redis did not answer while stopping; connections dropped, the lock expires by itself",
          );
          runtime.abort();
        }
      })();
      return closing;
    },
  };
}
