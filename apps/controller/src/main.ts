#!/usr/bin/env node
import { endProcess, ValidationError } from "@virtfleet/core";
import { REDACT_PATHS, redactError } from "@virtfleet/fleet";
import { controllerOptionsFromEnv, type RunningController, startController } from "@virtfleet/labs";
import { pino } from "pino";
import { parseControllerEnv } from "./env.js";

/** How long a graceful stop may take before the process ends anyway (ms). */
const STOP_TIMEOUT_MS = 15_000;

/** virtfleet-controller: runs only the fleet's controller (reaper, pool manager), elected like a worker's. */
async function main(): Promise<void> {
  let env: ReturnType<typeof parseControllerEnv>;
  try {
    env = parseControllerEnv(process.env);
  } catch (error) {
    if (error instanceof ValidationError) {
      for (const issue of error.issues)
        process.stderr.write(`virtfleet-controller: bad configuration: ${issue.field}: ${issue.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = pino(
    {
      level: env.LOG_LEVEL,
      base: { pid: process.pid },
      serializers: { err: (e: unknown) => pino.stdSerializers.err(redactError(e) as Error) },
      redact: REDACT_PATHS,
    },
    pino.destination({ dest: 1, sync: true }),
  );

  let running: RunningController | undefined;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: stopping now");
      endProcess(logger, 130);
      return;
    }
    stopping = true;
    logger.info({ signal }, "stopping: finishing the running ticks, giving the lock up");
    const force = setTimeout(() => {
      logger.warn("shutdown did not finish: stopping now");
      endProcess(logger, 1);
    }, STOP_TIMEOUT_MS);
    force.unref();
    (running?.close() ?? Promise.resolve()).then(
      () => endProcess(logger, signal),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        endProcess(logger, 1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  try {
    running = await startController({
      redis: env.redis,
      prefix: env.VIRTFLEET_PREFIX,
      logger,
      ...controllerOptionsFromEnv(env),
    });
    logger.info({ prefix: env.VIRTFLEET_PREFIX, lockMs: env.VIRTFLEET_CONTROLLER_LOCK_MS }, "controller started");
    if (stopping) await running.close();
  } catch (error) {
    logger.fatal({ err: error }, "controller failed to start");
    await running?.close();
    endProcess(logger, 1);
  }
}

await main();
