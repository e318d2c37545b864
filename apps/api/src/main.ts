#!/usr/bin/env node
import { endProcess, ValidationError } from "@virtfleet/core";
import { REDACT_PATHS, redactError } from "@virtfleet/fleet";
import { ApiServer, TokenStore } from "@virtfleet/server";
import { pino } from "pino";
import { parseApiEnv } from "./env.js";

async function main(): Promise<void> {
  let env: ReturnType<typeof parseApiEnv>;
  let tokens: TokenStore;
  try {
    env = parseApiEnv(process.env);
    tokens = await TokenStore.load(env.VIRTFLEET_API_TOKENS_FILE);
  } catch (error) {
    if (error instanceof ValidationError) {
      for (const i of error.issues)
        process.stderr.write(`virtfleet-api: bad configuration: ${i.field}: ${i.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`virtfleet-api: cannot read the tokens file: ${(error as Error).message}\n`);
    process.exit(2);
  }
  // Written synchronously: the last lines before an exit are not lost.
  // Never a Redis password: errors lose it (a refused AUTH carries it), logged options too.
  const logger = pino(
    {
      level: env.LOG_LEVEL,
      serializers: { err: (e: unknown) => pino.stdSerializers.err(redactError(e) as Error) },
      redact: REDACT_PATHS,
    },
    pino.destination({ dest: 1, sync: true }),
  );
  if (env.VIRTFLEET_WEBHOOK_SECRET === undefined)
    logger.warn("VIRTFLEET_WEBHOOK_SECRET is not set: callbacks are refused for tenants without a webhookSecret");
  const server = new ApiServer({
    redis: env.redis,
    prefix: env.VIRTFLEET_PREFIX,
    tokens,
    logger,
    host: env.VIRTFLEET_API_HOST,
    port: env.VIRTFLEET_API_PORT,
    idempotencyTtlSec: env.VIRTFLEET_IDEMPOTENCY_TTL_SEC,
    bodyLimit: env.VIRTFLEET_API_BODY_LIMIT,
    ...(env.VIRTFLEET_WEBHOOK_SECRET === undefined ? {} : { webhookSecret: env.VIRTFLEET_WEBHOOK_SECRET }),
    webhookAllowPrivate: env.VIRTFLEET_WEBHOOK_ALLOW_PRIVATE,
    webhookConcurrency: env.VIRTFLEET_WEBHOOK_CONCURRENCY,
    streamConnections: env.VIRTFLEET_API_STREAM_CONNECTIONS,
    maxStreamsPerToken: env.VIRTFLEET_API_MAX_STREAMS_PER_TOKEN,
    consoleTimeoutMs: env.VIRTFLEET_API_CONSOLE_TIMEOUT_MS,
    metricsAuth: env.VIRTFLEET_METRICS_AUTH,
    ...(env.VIRTFLEET_METRICS_PORT === undefined ? {} : { metricsPort: env.VIRTFLEET_METRICS_PORT }),
    ...(env.VIRTFLEET_METRICS_HOST === undefined ? {} : { metricsHost: env.VIRTFLEET_METRICS_HOST }),
  });
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return endProcess(logger, 130);
    stopping = true;
    logger.info({ signal }, "stopping");
    server.close().then(
      () => {
        logger.info("stopped");
        endProcess(logger, signal);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        endProcess(logger, 1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  try {
    await server.start();
    logger.info({ url: server.url }, "virtfleet-api listening");
  } catch (error) {
    logger.fatal({ err: error }, "virtfleet-api failed to start");
    await server.close();
    endProcess(logger, 1);
  }
}

await main();
