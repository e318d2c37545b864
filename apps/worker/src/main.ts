#!/usr/bin/env node
import { HostAgent, SHUTDOWN_GRACE_MS } from "@virtfleet/agent";
import { endProcess, ValidationError } from "@virtfleet/core";
import { REDACT_PATHS, redactError } from "@virtfleet/fleet";
import { controllerOptionsFromEnv, type RunningController, startController } from "@virtfleet/labs";
import { pino } from "pino";
import { parseWorkerEnv } from "./env.js";

async function main(): Promise<void> {
  let env: ReturnType<typeof parseWorkerEnv>;
  try {
    env = parseWorkerEnv(process.env);
  } catch (error) {
    if (error instanceof ValidationError) {
      for (const issue of error.issues)
        process.stderr.write(`virtfleet-worker: bad configuration: ${issue.field}: ${issue.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  // Written synchronously: the last lines before an exit are not lost.
  // Never a Redis password: errors lose it (a refused AUTH carries it), logged options too.
  const logger = pino(
    {
      level: env.LOG_LEVEL,
      base: { pid: process.pid },
      serializers: { err: (e: unknown) => pino.stdSerializers.err(redactError(e) as Error) },
      redact: REDACT_PATHS,
    },
    pino.destination({ dest: 1, sync: true }),
  );
  const agent = new HostAgent({
    redis: env.redis,
    prefix: env.VIRTFLEET_PREFIX,
    hostId: env.VIRTFLEET_HOST_ID,
    libvirtUri: env.VIRTFLEET_LIBVIRT_URI,
    storageDir: env.VIRTFLEET_STORAGE_DIR,
    imageDir: env.VIRTFLEET_IMAGE_DIR,
    virtType: env.VIRTFLEET_VIRT_TYPE,
    concurrency: env.VIRTFLEET_CONCURRENCY,
    labels: env.VIRTFLEET_LABELS,
    ...(env.VIRTFLEET_ALLOWED_NETWORKS === undefined ? {} : { allowedNetworks: env.VIRTFLEET_ALLOWED_NETWORKS }),
    qemuUser: env.VIRTFLEET_QEMU_USER,
    ...(env.VIRTFLEET_QEMU_GROUP === undefined ? {} : { qemuGroup: env.VIRTFLEET_QEMU_GROUP }),
    ...(env.VIRTFLEET_CAPACITY_MEMORY_MB === undefined ? {} : { capacityMemoryMiB: env.VIRTFLEET_CAPACITY_MEMORY_MB }),
    ...(env.VIRTFLEET_CAPACITY_VCPUS === undefined ? {} : { capacityVcpus: env.VIRTFLEET_CAPACITY_VCPUS }),
    overcommitMemory: env.VIRTFLEET_OVERCOMMIT_MEMORY,
    overcommitCpu: env.VIRTFLEET_OVERCOMMIT_CPU,
    overcommitDisk: env.VIRTFLEET_OVERCOMMIT_DISK,
    ...(env.VIRTFLEET_IMAGE_CACHE_GB > 0
      ? { imageCacheBytes: Math.floor(env.VIRTFLEET_IMAGE_CACHE_GB * 2 ** 30) }
      : {}),
    heartbeatMs: env.VIRTFLEET_HEARTBEAT_MS,
    lockMs: env.VIRTFLEET_LOCK_MS,
    stalledIntervalMs: env.VIRTFLEET_STALLED_INTERVAL_MS,
    maxStalledCount: env.VIRTFLEET_MAX_STALLED,
    shutdownTimeoutMs: env.VIRTFLEET_SHUTDOWN_TIMEOUT_MS,
    logger,
  });

  let controller: RunningController | undefined;
  /** The controller first (it gives its lock up at once), then the agent. */
  const close = async () => {
    await controller
      ?.close()
      .catch((error: unknown) => logger.warn({ err: error }, "controller did not close cleanly"));
    await agent.close();
  };

  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: stopping now");
      endProcess(logger, 130);
      return;
    }
    stopping = true;
    logger.info(
      { signal, timeoutMs: env.VIRTFLEET_SHUTDOWN_TIMEOUT_MS },
      "stopping: taking no new jobs, finishing running ones",
    );
    // The agent hands running jobs back at the deadline and gives up on what has not closed a grace
    // period later, Redis or not; this is the last resort if even that hangs.
    const force = setTimeout(
      () => {
        logger.warn("shutdown did not finish: stopping now; unfinished jobs will be picked up again");
        endProcess(logger, 1);
      },
      env.VIRTFLEET_SHUTDOWN_TIMEOUT_MS + SHUTDOWN_GRACE_MS + 5000,
    );
    force.unref();
    close().then(
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
    await agent.start();
    if (env.VIRTFLEET_CONTROLLER && !stopping)
      controller = await startController({
        redis: env.redis,
        prefix: env.VIRTFLEET_PREFIX,
        logger,
        ...controllerOptionsFromEnv(env),
      });
    if (stopping) await controller?.close();
  } catch (error) {
    logger.fatal({ err: error }, "worker failed to start");
    await close();
    endProcess(logger, 1);
  }
}

await main();
