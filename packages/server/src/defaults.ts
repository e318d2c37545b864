/**
 * The API server's listener and request defaults, defined once: ApiServer falls back to them and
 * apps/api's env.ts uses them as the defaults of its variables. (Streams, metrics and webhooks keep
 * theirs next to their code: DEFAULT_STREAM_CONNECTIONS, DEFAULT_MAX_STREAMS_PER_TOKEN,
 * DEFAULT_METRICS_AUTH, DEFAULT_WEBHOOK_CONCURRENCY.)
 */

/** The address the API listens on (VIRTFLEET_API_HOST): loopback unless told otherwise. */
export const DEFAULT_API_HOST = "127.0.0.1";
/** The API's port (VIRTFLEET_API_PORT). */
export const DEFAULT_API_PORT = 8080;
/** Largest request body, in bytes (VIRTFLEET_API_BODY_LIMIT). */
export const DEFAULT_BODY_LIMIT = 1024 * 1024;
/** How long an Idempotency-Key's answer is kept (VIRTFLEET_IDEMPOTENCY_TTL_SEC). */
export const DEFAULT_IDEMPOTENCY_TTL_SEC = 86_400;
