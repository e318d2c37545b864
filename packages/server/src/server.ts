import { setMaxListeners } from "node:events";
import rateLimit from "@fastify/rate-limit";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import {
  ANONYMOUS_RATE_LIMIT_PER_MIN,
  BatchRequest,
  CreateVmRequest,
  ImageImportInput,
  ImageName,
  isTerminal,
  JobId,
  ListVmsQuery,
  parseOrThrow,
  VirtfleetError,
  VmName,
} from "@virtfleet/core";
import { hasUiHeader, isMutating, registerDashboard, SessionStore, sessionCookie } from "@virtfleet/dashboard";
import {
  ConsoleClient,
  type CreateOptions,
  closeRedis,
  createRedis,
  explainRedisError,
  FleetClient,
  isRedisAuthError,
  Keys,
  quietErrors,
  type RedisConfig,
  replicationError,
  reportRedisErrors,
  resolveRedisConfig,
  type VmRecord,
} from "@virtfleet/fleet";
import {
  buildLeaseHandlers,
  createLabsDeps,
  LabService,
  type LabsDeps,
  LeaseEvents,
  type LeaseHandlers,
  PoolService,
  type PowerControl,
  releaseLease,
  type TemplateStore,
} from "@virtfleet/labs";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { z } from "zod";
import { auditMutatingCalls } from "./audit.js";
import { canSee, type Principal, requireScope, type TokenStore } from "./auth.js";
import { checkCallbackUrl } from "./callback-url.js";
import { DEFAULT_API_HOST, DEFAULT_API_PORT, DEFAULT_BODY_LIMIT } from "./defaults.js";
import { EventStreams, type StreamSource } from "./event-streams.js";
import { IdempotencyStore } from "./idempotency.js";
import { DEFAULT_METRICS_AUTH, Metrics, type MetricsAuth } from "./metrics.js";
import { checkNetworks } from "./network-policy.js";
import { buildOpenApi } from "./openapi.js";
import { PoolMetrics } from "./pool-metrics.js";
import { problem, toProblem } from "./problem.js";
import { registerFailedJobRoutes } from "./routes/failed-jobs.js";
import { registerFleetEventRoutes } from "./routes/fleet-events.js";
import { hostView, registerHostRoutes } from "./routes/hosts.js";
import { registerLabRoutes } from "./routes/labs.js";
import { registerLeaseRoutes } from "./routes/leases.js";
import { registerPoolRoutes } from "./routes/pools.js";
import { registerQueuesBoard } from "./routes/queues-board.js";
import type { RouteContext } from "./routes/route-context.js";
import { registerTemplateRoutes } from "./routes/templates.js";
import { registerConsoleRoutes } from "./routes/vm-console.js";
import { lastEventIdOf, SSE_KEEP_ALIVE, sseEvent, startSse } from "./sse.js";
import { EventTail } from "./webhooks.js";

export interface ApiServerOptions {
  /** How to reach Redis (credentials, TLS): e.g. `redisConfigFromEnv()`. Either this or `redisUrl`. */
  redis?: RedisConfig;
  /** Redis URL: short for `redis: { url }`. */
  redisUrl?: string;
  prefix?: string;
  tokens: TokenStore;
  logger: Logger;
  /** Default DEFAULT_API_HOST (127.0.0.1). */
  host?: string;
  /** Default DEFAULT_API_PORT (8080); 0 picks a free port. */
  port?: number;
  /**
   * HMAC key for the webhooks of tenants whose tokens name no `webhookSecret` of their own. Unset:
   * such tenants' creates with a `callbackUrl` are refused (INVALID_SPEC, field `callbackUrl`).
   */
  webhookSecret?: string;
  /** Let callback URLs reach loopback, private and link-local addresses. Default false. */
  webhookAllowPrivate?: boolean;
  /** Webhook deliveries in flight at once. Default DEFAULT_WEBHOOK_CONCURRENCY (8). */
  webhookConcurrency?: number;
  /** How long an Idempotency-Key's answer is kept. Default DEFAULT_IDEMPOTENCY_TTL_SEC (86400 s). */
  idempotencyTtlSec?: number;
  /** Largest request body. Default DEFAULT_BODY_LIMIT (1 MiB). */
  bodyLimit?: number;
  webhookMinTimeoutMs?: number;
  /** Redis connections shared by all event streams. Default DEFAULT_STREAM_CONNECTIONS. */
  streamConnections?: number;
  /** Event streams one token may hold open at once (more: 429). Default DEFAULT_MAX_STREAMS_PER_TOKEN. */
  maxStreamsPerToken?: number;
  /** Who may read /metrics. Default DEFAULT_METRICS_AUTH (a token with `metrics:read`). */
  metricsAuth?: MetricsAuth;
  /**
   * Serve /metrics on its own listener at this port (0 picks a free one) instead of the API's;
   * `metricsHost` is its address (default: `host`).
   */
  metricsPort?: number;
  metricsHost?: string;
  /** How long one read of the hosts serves /metrics scrapes. Default METRICS_CACHE_MS. */
  metricsCacheMs?: number;
  /** Suspends and resumes pool VMs on their hosts (claims of paused pools). */
  power?: PowerControl;
  /** What releasing each kind of lease does; default: buildLeaseHandlers (the pools' and labs' own). */
  leaseHandlers?: LeaseHandlers;
  /** How long `GET /v1/vms/{name}/console` waits for the VM's host. Default DEFAULT_CONSOLE_TIMEOUT_MS (5 s). */
  consoleTimeoutMs?: number;
  /** Serve the web dashboard at /ui/. Default true. */
  dashboard?: boolean;
  /** How long a dashboard session lasts. Default DEFAULT_SESSION_TTL_SEC (8 h). */
  sessionTtlSec?: number;
}

const BatchId = z.string().regex(/^batch-[0-9a-f-]{36}$/, "not a batch id");
const IdempotencyKey = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces");

declare module "fastify" {
  interface FastifyRequest {
    principal?: Principal;
    /** True when `principal` comes from the dashboard's session cookie (not a bearer token). */
    viaSession?: boolean;
  }
}

function vmView(r: VmRecord) {
  const { fingerprint: _f, tenant: _t, ...view } = r;
  return view;
}

/** An AbortController whose signal any number of open streams may listen on at once. */
function unlimitedListeners(controller: AbortController): AbortController {
  setMaxListeners(0, controller.signal);
  return controller;
}

/**
 * virtfleet's HTTP API: JSON under /v1, bearer tokens with scopes and tenants, quotas at admission,
 * Idempotency-Key, Server-Sent Events with Last-Event-ID, signed webhooks, OpenAPI, metrics.
 */
export class ApiServer {
  readonly app: FastifyInstance;
  readonly fleet: FleetClient;
  /** Labs (`/v1/labs`). */
  readonly labs: LabService;
  /**
   * Aborted on close: ends the lab and fleet event streams. Each open stream listens on it until its
   * client leaves, so more than Node's default of 10 listeners is normal, not a leak.
   */
  readonly #closingSignal = unlimitedListeners(new AbortController());
  readonly #o: ApiServerOptions;
  readonly #redis: Redis;
  /** The event tail's own connection (its blocking reads), closed after the tail. */
  readonly #tailRedis: Redis;
  readonly #idem: IdempotencyStore;
  readonly #tail: EventTail;
  readonly #metrics: Metrics;
  readonly #streams: EventStreams;
  readonly #templates: TemplateStore;
  /** Warm pools (routes in routes/pools.ts). */
  readonly pools: PoolService;
  readonly #poolMetrics: PoolMetrics;
  /** Lab environments (leases, pools, labs, templates) over the server's connection and fleet client. */
  readonly #labEnv: { deps: LabsDeps; close(): Promise<void> };
  readonly #leaseHandlers: LeaseHandlers;
  /** Console tails from the hosts' workers (`GET /v1/vms/{name}/console`). */
  readonly #console: ConsoleClient;
  /** Dashboard sign-ins (session id → token SHA-256). */
  readonly #sessions: SessionStore;
  #metricsApp: FastifyInstance | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: ApiServerOptions) {
    this.#o = options;
    const keys = new Keys(options.prefix);
    const redis = resolveRedisConfig(options);
    this.fleet = new FleetClient({ redis, ...(options.prefix === undefined ? {} : { prefix: options.prefix }) });
    this.#redis = createRedis({ config: redis, connectionName: "virtfleet-api" });
    // A refused password or an untrusted certificate: one clear line (never the secret); /readyz says 503.
    reportRedisErrors(this.#redis, (error) =>
      options.logger.error({ err: error }, `Redis: ${explainRedisError(error)}`),
    );
    this.#console = new ConsoleClient(this.#redis, keys);
    this.#idem = new IdempotencyStore(this.#redis, keys, options.idempotencyTtlSec);
    this.#sessions = new SessionStore(this.#redis, keys.prefix, options.sessionTtlSec);
    this.#labEnv = createLabsDeps({ redis: this.#redis, fleet: this.fleet, logger: options.logger });
    this.#templates = this.#labEnv.deps.templates;
    this.labs = new LabService(this.#labEnv.deps);
    this.#leaseHandlers = options.leaseHandlers ?? buildLeaseHandlers(this.#labEnv.deps);
    this.#metrics = new Metrics(this.fleet, {
      ...(options.metricsCacheMs === undefined ? {} : { cacheMs: options.metricsCacheMs }),
      leaseExpiries: () => new LeaseEvents(this.#redis, this.#labEnv.deps.keys, options.logger).expiries(),
    });
    this.#streams = new EventStreams({
      connect: () => this.fleet.connect(),
      redis: this.#redis,
      logger: options.logger,
      ...(options.streamConnections === undefined ? {} : { connections: options.streamConnections }),
      ...(options.maxStreamsPerToken === undefined ? {} : { maxPerToken: options.maxStreamsPerToken }),
    });
    this.#tailRedis = quietErrors(this.#redis.duplicate());
    this.#tail = new EventTail({
      redis: this.#tailRedis,
      keys,
      log: this.fleet.log,
      logger: options.logger,
      ...(options.webhookSecret === undefined ? {} : { secret: options.webhookSecret }),
      tenantSecret: (tenant) => options.tokens.webhookSecret(tenant),
      allowPrivate: options.webhookAllowPrivate ?? false,
      ...(options.webhookConcurrency === undefined ? {} : { concurrency: options.webhookConcurrency }),
      onEvent: (e) => this.#metrics.observe(e),
      ...(options.webhookMinTimeoutMs === undefined ? {} : { minTimeoutMs: options.webhookMinTimeoutMs }),
    });
    this.pools = new PoolService({
      ...this.#labEnv.deps,
      ...(options.power === undefined ? {} : { power: options.power }),
    });
    this.#poolMetrics = new PoolMetrics(this.#metrics.registry, () => this.pools.list(), options.metricsCacheMs);
    this.app = Fastify({
      loggerInstance: options.logger as unknown as FastifyBaseLogger,
      bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    });
  }

  get url(): string {
    const address = this.app.server.address();
    if (address === null || typeof address === "string") throw new Error("not listening");
    return `http://${address.address}:${address.port}`;
  }

  /** Where /metrics is served: its own listener (with `metricsPort`), else the API's. */
  get metricsUrl(): string {
    const address = (this.#metricsApp ?? this.app).server.address();
    if (address === null || typeof address === "string") throw new Error("not listening");
    return `http://${address.address}:${address.port}/metrics`;
  }

  async start(): Promise<void> {
    const app = this.app;
    app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
      let err: unknown = error;
      if (!(error instanceof VirtfleetError)) {
        const status = error.statusCode ?? 500;
        if (status === 413) err = problem("PAYLOAD_TOO_LARGE", "the request body is too large");
        else if (status === 429) err = problem("RATE_LIMITED", error.message);
        else if (status === 415) err = problem("INVALID_SPEC", "the body must be application/json", "body");
        else if (status >= 400 && status < 500) err = problem("INVALID_SPEC", error.message, "body");
        else request.log.error({ err: error }, "request failed");
      }
      const p = toProblem(err);
      request.problemCode = p.code;
      // Replicas late or gone (a failover under way): worth retrying shortly, with the same Idempotency-Key.
      if (p.code === "REPLICATION_TIMEOUT") void reply.header("retry-after", "1");
      void reply.status(p.status).type("application/problem+json").send(p);
    });
    app.setNotFoundHandler((request, reply) => {
      const p = toProblem(problem("NOT_FOUND", `no route ${request.method} ${request.url.split("?")[0]}`));
      request.problemCode = p.code;
      void reply.status(404).type("application/problem+json").send(p);
    });
    auditMutatingCalls(app, this.#o.logger, (request) => this.#principalOrUndefined(request));

    if (this.#o.dashboard ?? true)
      await registerDashboard(app, {
        sessions: this.#sessions,
        checkToken: (token) => this.#o.tokens.check(token),
        principal: (request) => this.#principalOrUndefined(request),
      });
    // A dashboard session cookie stands for its token when no Authorization header is given.
    app.addHook("onRequest", async (request) => {
      if (request.headers.authorization !== undefined) return;
      const id = sessionCookie(request);
      if (id === undefined) return;
      const hash = await this.#sessions.tokenOf(id);
      const principal = hash === undefined ? undefined : this.#o.tokens.byTokenSha256(hash);
      if (principal === undefined) return;
      request.principal = principal;
      request.viaSession = true;
    });

    const document = buildOpenApi();
    await app.register(swagger, { mode: "static", specification: { document: document as never } });
    await app.register(swaggerUi, { routePrefix: "/v1/docs" });
    await app.register(rateLimit, {
      global: true,
      max: (request: FastifyRequest) => this.#principalOrUndefined(request)?.rateLimit ?? ANONYMOUS_RATE_LIMIT_PER_MIN,
      timeWindow: 60_000,
      keyGenerator: (request: FastifyRequest) => this.#principalOrUndefined(request)?.tokenId ?? request.ip,
      allowList: (request: FastifyRequest) =>
        !request.url.startsWith("/v1/") || request.url.startsWith("/v1/docs") || request.url === "/v1/openapi.json",
      errorResponseBuilder: (_request, context) => {
        const e = problem(
          "RATE_LIMITED",
          `rate limit of ${context.max} requests a minute exceeded; retry in ${Math.ceil(context.ttl / 1000)} s`,
        );
        (e as unknown as { statusCode: number }).statusCode = 429;
        return e;
      },
    });

    app.get("/healthz", async () => ({ ok: true }));
    app.get("/readyz", async (_request, reply) => {
      try {
        await this.#redis.ping();
        return { ok: true, redis: "up" };
      } catch {
        return reply.status(503).send({ ok: false, redis: "down" });
      }
    });
    const metricsAuth = this.#o.metricsAuth ?? DEFAULT_METRICS_AUTH;
    if (this.#o.metricsPort === undefined) this.#metrics.route(app, metricsAuth, this.#o.tokens);
    app.get("/v1/openapi.json", async () => document);

    // Every /v1 route but the documents needs a known token.
    app.addHook("onRequest", async (request) => {
      if (!request.url.startsWith("/v1/") || request.url.startsWith("/v1/docs") || request.url === "/v1/openapi.json")
        return;
      if (request.viaSession === true) {
        // CSRF guard: a cookie rides along on any request to us; a custom header cannot.
        if (isMutating(request.method) && !hasUiHeader(request))
          throw problem("FORBIDDEN", "cookie-authenticated changes need the X-Virtfleet-UI: 1 header");
        return;
      }
      request.principal = this.#authenticate(request);
    });

    app.post("/v1/vms", (request, reply) =>
      this.#mutating(request, reply, "vms:write", async (p) => {
        const body = parseOrThrow(CreateVmRequest, request.body, "body");
        checkNetworks(p, [["spec.networks", body.spec.networks]]);
        await this.#checkCallback(p, body.callbackUrl);
        const job = await this.fleet.createVm(body.spec, this.#createOptions(p, body));
        return { status: 202, body: { jobId: job.id, vm: body.spec.name, kind: "create" } };
      }),
    );

    app.post("/v1/batches", (request, reply) =>
      this.#mutating(request, reply, "vms:write", async (p) => {
        const body = parseOrThrow(BatchRequest, request.body, "body");
        checkNetworks(
          p,
          body.template
            ? [["template.networks", body.template.networks]]
            : (body.vms ?? []).map((v, i) => [`vms.${i}.networks`, v.networks]),
        );
        await this.#checkCallback(p, body.callbackUrl);
        const specs =
          body.vms ??
          Array.from({ length: body.count ?? 0 }, (_, i) => ({
            ...body.template,
            name: body.template?.name.replaceAll("{n}", String(i + 1)),
          }));
        const result = await this.fleet.createBatch(specs, this.#createOptions(p, body));
        return { status: 202, body: result };
      }),
    );

    registerPoolRoutes(app, {
      pools: this.pools,
      metrics: this.#poolMetrics,
      principal: (request, scope) => this.#principal(request, scope),
      mutating: (request, reply, scope, work) => this.#mutating(request, reply, scope, work),
      quota: (tenant) => this.#o.tokens.quota(tenant),
    });

    app.get("/v1/vms", async (request) => {
      const p = this.#principal(request, "vms:read");
      const q = parseOrThrow(ListVmsQuery, request.query, "query");
      const [lk, lv] = q.label === undefined ? [] : q.label.split("=");
      return (await this.fleet.vms.list())
        .filter((v) => canSee(p, v.tenant))
        .filter((v) => (q.host === undefined || v.hostId === q.host) && (q.state === undefined || v.state === q.state))
        .filter((v) => lk === undefined || v.labels[lk] === lv)
        .map(vmView);
    });

    app.get("/v1/vms/:name", async (request) => {
      const p = this.#principal(request, "vms:read");
      const name = parseOrThrow(VmName, (request.params as { name: string }).name, "name");
      const vm = await this.fleet.vms.get(name);
      if (vm === undefined || !canSee(p, vm.tenant)) throw problem("VM_NOT_FOUND", `no VM "${name}"`, "name");
      return vmView(vm);
    });

    app.delete("/v1/vms/:name", (request, reply) =>
      this.#mutating(request, reply, "vms:write", async (p) => {
        const name = parseOrThrow(VmName, (request.params as { name: string }).name, "name");
        const vm = await this.fleet.vms.get(name);
        if (vm === undefined || !canSee(p, vm.tenant)) throw problem("VM_NOT_FOUND", `no VM "${name}"`, "name");
        const job = await this.fleet.destroyVm(name, p.scopes.has("admin") ? {} : { tenant: p.tenant });
        return { status: 202, body: { jobId: job.id, vm: name, kind: "destroy" } };
      }),
    );

    registerLeaseRoutes(app, {
      leases: this.#labEnv.deps.leases,
      release: (id) => releaseLease(this.#labEnv.deps, this.#leaseHandlers, id),
      principal: (request, scope) => this.#principal(request, scope),
      mutating: (request, reply, scope, work) => this.#mutating(request, reply, scope, work),
    });

    app.get("/v1/jobs/:id", async (request) => {
      const p = this.#principal(request, "vms:read");
      const record = await this.#job(p, (request.params as { id: string }).id);
      return {
        jobId: record.jobId,
        kind: record.kind,
        vm: record.vm,
        ...(record.hostId === undefined ? {} : { hostId: record.hostId }),
        phase: record.phase,
        percent: record.percent,
        message: record.message,
        createdAt: record.createdAt,
        updatedAt: record.updatedAt,
        ...(record.error === undefined ? {} : { error: record.error }),
        ...(record.batchId === undefined ? {} : { batchId: record.batchId }),
      };
    });

    app.post("/v1/jobs/:id/cancel", (request, reply) =>
      this.#mutating(request, reply, "vms:write", async (p) => {
        const record = await this.#job(p, (request.params as { id: string }).id);
        const outcome = await this.fleet.cancelJob(record.jobId);
        return { status: 200, body: { jobId: record.jobId, outcome } };
      }),
    );

    app.get("/v1/jobs/:id/events", async (request, reply) => {
      const p = this.#principal(request, "vms:read");
      const record = await this.#job(p, (request.params as { id: string }).id);
      const after = this.#lastEventId(request);
      this.#stream(reply, p, after, {
        key: this.fleet.keys.jobEvents(record.jobId),
        ended: async () => {
          const { phase } = await this.fleet.log.progress(record.jobId);
          return phase === undefined || isTerminal(phase);
        },
      });
    });

    app.get("/v1/batches/:id", async (request) => {
      const p = this.#principal(request, "vms:read");
      const batch = await this.#batch(p, (request.params as { id: string }).id);
      const items = await Promise.all(
        batch.items.map(async (i) => {
          if (i.jobId === undefined)
            return { vm: i.vm, phase: "refused", ...(i.error === undefined ? {} : { error: i.error }) };
          const job = await this.fleet.log.getJob(i.jobId);
          // Never another tenant's job, whatever the item says.
          if (job !== undefined && job.tenant !== batch.tenant) return { vm: i.vm, phase: "unknown" };
          return {
            vm: i.vm,
            jobId: i.jobId,
            phase: job?.phase ?? "unknown",
            ...(job?.error === undefined ? {} : { error: job.error }),
          };
        }),
      );
      const counts: Record<string, number> = {};
      for (const i of items) counts[i.phase] = (counts[i.phase] ?? 0) + 1;
      return { batchId: batch.batchId, createdAt: batch.createdAt, total: batch.total, counts, items };
    });

    app.get("/v1/batches/:id/events", async (request, reply) => {
      const p = this.#principal(request, "vms:read");
      const batch = await this.#batch(p, (request.params as { id: string }).id);
      const after = this.#lastEventId(request);
      // Only the events of the batch's own tenant's jobs (defensive: the batch's stream holds no other).
      const own = new Set(
        (
          await Promise.all(
            batch.items.map(async (i) =>
              i.jobId !== undefined && (await this.fleet.log.getJob(i.jobId))?.tenant === batch.tenant ? [i.jobId] : [],
            ),
          )
        ).flat(),
      );
      this.#stream(reply, p, after, {
        key: this.fleet.keys.batchEvents(batch.batchId),
        ended: () => this.fleet.batchEnded(batch.batchId),
        accept: (e) => own.has(e.jobId),
      });
    });

    registerLabRoutes(app, {
      labs: this.labs,
      principal: (request, scope) => this.#principal(request, scope),
      mutating: (request, reply, scope, work) => this.#mutating(request, reply, scope, work),
      owner: (p) => {
        const quota = this.#o.tokens.quota(p.tenant);
        return { tenant: p.tenant, quota, ...(quota.batches === undefined ? {} : { maxBatches: quota.batches }) };
      },
      lastEventId: (request) => this.#lastEventId(request),
      closing: this.#closingSignal.signal,
    });

    app.get("/v1/hosts", async (request) => {
      this.#principal(request, "hosts:read");
      return (await this.fleet.hosts.list()).map(hostView);
    });

    app.get("/v1/images", async (request) => {
      const p = this.#principal(request, "vms:read");
      const hosts = p.scopes.has("hosts:read") || p.scopes.has("admin");
      return (await this.fleet.images.list()).map(({ hosts: held, ...record }) =>
        hosts ? { ...record, hosts: held } : record,
      );
    });

    app.post("/v1/images", (request, reply) =>
      this.#mutating(request, reply, "admin", async () => {
        const input = parseOrThrow(ImageImportInput, request.body);
        const record =
          input.url !== undefined
            ? await this.fleet.images.importUrl(input)
            : await this.fleet.images.importFile(input);
        return { status: 201, body: record };
      }),
    );

    app.delete("/v1/images/:name", (request, reply) =>
      this.#mutating(request, reply, "admin", async () => {
        const name = parseOrThrow(ImageName, (request.params as { name: string }).name, "name");
        await this.fleet.images.remove(name);
        return { status: 200, body: { name, removed: true } };
      }),
    );

    const routes: RouteContext = {
      principal: (request, scope) => this.#principal(request, scope),
      mutating: (request, reply, scope, work) => this.#mutating(request, reply, scope, work),
    };
    registerTemplateRoutes(app, routes, this.#templates);
    registerHostRoutes(app, routes, this.fleet.hosts);
    registerFailedJobRoutes(app, routes, this.#redis, this.fleet.keys);
    registerConsoleRoutes(app, routes, {
      vms: this.fleet.vms,
      console: this.#console,
      ...(this.#o.consoleTimeoutMs === undefined ? {} : { timeoutMs: this.#o.consoleTimeoutMs }),
    });
    registerFleetEventRoutes(app, routes, {
      keys: this.fleet.keys,
      redis: this.#redis,
      connect: () => this.fleet.connect(),
      tenantOf: async (jobId) => (await this.fleet.log.getJob(jobId))?.tenant,
      closing: this.#closingSignal.signal,
      ...(this.#o.maxStreamsPerToken === undefined ? {} : { maxPerToken: this.#o.maxStreamsPerToken }),
    });
    await registerQueuesBoard(app, { fleet: this.fleet, authenticate: (request) => this.#authenticate(request) });

    try {
      await this.#tail.start();
    } catch (error) {
      // Redis refuses our credentials: listen anyway (/readyz says 503, the log says why) and start
      // the event tail once it lets us in.
      if (!isRedisAuthError(error)) throw error;
      void this.#startTailLater();
    }
    if (this.#o.metricsPort !== undefined) {
      // Only /metrics, on an address of its own (e.g. one only the Prometheus network reaches).
      const m = Fastify({ loggerInstance: this.#o.logger as unknown as FastifyBaseLogger });
      this.#metricsApp = m;
      m.setErrorHandler((error, _request, reply) => {
        const p = toProblem(error);
        void reply.status(p.status).type("application/problem+json").send(p);
      });
      m.setNotFoundHandler((request, reply) => {
        const p = toProblem(problem("NOT_FOUND", `no route ${request.method} ${request.url.split("?")[0]}`));
        void reply.status(404).type("application/problem+json").send(p);
      });
      this.#metrics.route(m, metricsAuth, this.#o.tokens);
      await m.listen({ host: this.#o.metricsHost ?? this.#o.host ?? DEFAULT_API_HOST, port: this.#o.metricsPort });
    }
    await app.listen({ host: this.#o.host ?? DEFAULT_API_HOST, port: this.#o.port ?? DEFAULT_API_PORT });
  }

  /** The caller of a request (UNAUTHENTICATED when there is none): the /v1 routes' and /ui/queues' one resolver. */
  /** The caller: its dashboard session's token (set by the session hook), else its bearer token. */
  #authenticate(request: FastifyRequest): Principal {
    if (request.viaSession === true && request.principal !== undefined) return request.principal;
    return this.#o.tokens.authenticate(request.headers.authorization);
  }

  #principalOrUndefined(request: FastifyRequest): Principal | undefined {
    try {
      return request.principal ?? this.#authenticate(request);
    } catch {
      return undefined;
    }
  }

  #principal(request: FastifyRequest, scope: Parameters<typeof requireScope>[1]): Principal {
    const p = request.principal;
    if (p === undefined) throw problem("UNAUTHENTICATED", "a bearer token is required");
    requireScope(p, scope);
    return p;
  }

  #createOptions(
    p: Principal,
    body: {
      placement?: {
        host?: string;
        labels?: Record<string, string>;
        group?: string;
        policy?: "spread" | "pack";
        waitForCapacitySec?: number;
      };
      guestReady?: CreateOptions["guestReady"];
      callbackUrl?: string;
    },
  ): CreateOptions {
    const pl = body.placement ?? {};
    return {
      ...(pl.host === undefined ? {} : { host: pl.host }),
      ...(pl.labels === undefined ? {} : { labels: pl.labels }),
      ...(pl.group === undefined ? {} : { group: pl.group }),
      ...(pl.policy === undefined ? {} : { policy: pl.policy }),
      ...(pl.waitForCapacitySec === undefined ? {} : { waitForCapacityMs: pl.waitForCapacitySec * 1000 }),
      ...(body.guestReady === undefined ? {} : { guestReady: body.guestReady }),
      ...(body.callbackUrl === undefined ? {} : { callbackUrl: body.callbackUrl }),
      tenant: p.tenant,
      quota: this.#o.tokens.quota(p.tenant),
      ...(this.#o.tokens.quota(p.tenant).batches === undefined
        ? {}
        : { maxBatches: this.#o.tokens.quota(p.tenant).batches }),
    };
  }

  /** A create's `callbackUrl`: only with a signing key for the tenant, only to an address webhooks may reach. */
  async #checkCallback(p: Principal, callbackUrl: string | undefined): Promise<void> {
    if (callbackUrl === undefined) return;
    if (this.#tail.secretFor(p.tenant) === undefined)
      throw problem(
        "INVALID_SPEC",
        "webhooks are not configured for this tenant (no webhookSecret, no VIRTFLEET_WEBHOOK_SECRET)",
        "callbackUrl",
      );
    await checkCallbackUrl(callbackUrl, { allowPrivate: this.#o.webhookAllowPrivate ?? false });
  }

  async #job(p: Principal, id: string) {
    const jobId = parseOrThrow(JobId, id, "id");
    const record = await this.fleet.log.getJob(jobId);
    if (record === undefined || !canSee(p, record.tenant)) throw problem("JOB_NOT_FOUND", `no job "${jobId}"`, "id");
    return record;
  }

  async #batch(p: Principal, id: string) {
    const batchId = parseOrThrow(BatchId, id, "id");
    const batch = await this.fleet.getBatch(batchId);
    if (batch === undefined || !canSee(p, batch.tenant)) throw problem("NOT_FOUND", `no batch "${batchId}"`, "id");
    return batch;
  }

  #lastEventId(request: FastifyRequest): string {
    const id = lastEventIdOf(request);
    if (id === undefined) return "0";
    if (!/^\d+-\d+$/.test(id))
      throw problem("INVALID_SPEC", "Last-Event-ID is not an event id of this stream", "Last-Event-ID");
    return id;
  }

  /**
   * Server-Sent Events: every event after `after`, each with its stream id (resume with
   * Last-Event-ID), until the job or batch has ended; a comment keeps quiet streams open through
   * proxies. The streams share EventStreams' connections; a token over its share gets 429.
   */
  #stream(reply: FastifyReply, p: Principal, after: string, source: StreamSource): void {
    const res = reply.raw;
    const stream = this.#streams.open(p.tokenId, source, after, {
      events: (events) => {
        let out = "";
        for (const { id, ...event } of events) out += sseEvent(id, "progress", event);
        res.write(out);
      },
      keepAlive: () => res.write(SSE_KEEP_ALIVE),
      end: () => res.end(),
    });
    startSse(reply, "virtfleet events");
    res.on("close", () => stream.close());
  }

  /** A mutating call: scope check, Idempotency-Key, then the work; the answer is stored for retries. */
  async #mutating(
    request: FastifyRequest,
    reply: FastifyReply,
    scope: Parameters<typeof requireScope>[1],
    work: (p: Principal) => Promise<{ status: number; body: unknown }>,
  ): Promise<unknown> {
    const p = this.#principal(request, scope);
    const rawKey = request.headers["idempotency-key"];
    const key =
      rawKey === undefined
        ? undefined
        : parseOrThrow(IdempotencyKey, Array.isArray(rawKey) ? rawKey[0] : rawKey, "Idempotency-Key");
    const fingerprint = IdempotencyStore.fingerprint(request.method, request.url, request.body);
    if (key !== undefined) {
      const earlier = await this.#idem.begin(p.tenant, key, fingerprint);
      if (earlier !== undefined) {
        // The stored answer (and what it answers for) may not be on the replicas yet either.
        await this.fleet.replicated();
        if (earlier.status >= 400) request.problemCode = (earlier.body as { code?: string }).code;
        void reply.header("idempotent-replayed", "true");
        return reply
          .status(earlier.status)
          .type(earlier.status >= 400 ? "application/problem+json" : "application/json")
          .send(earlier.body);
      }
    }
    let answer: { status: number; body: unknown };
    try {
      answer = await work(p);
    } catch (thrown) {
      // Redis refused a write for want of replicas (min-replicas-to-write): REPLICATION_TIMEOUT, retryable.
      const error = replicationError(thrown) ?? thrown;
      if (key === undefined) throw error;
      const pr = toProblem(error);
      // A refusal is the answer to this request; a server fault is not, and the key can be retried.
      if (pr.status >= 500) {
        await this.#idem.abandon(p.tenant, key);
        throw error;
      }
      answer = { status: pr.status, body: pr };
    }
    if (key !== undefined) await this.#idem.complete(p.tenant, key, fingerprint, answer);
    // Nothing is acknowledged before REDIS_MIN_REPLICAS replicas hold it (and the stored answer):
    // else REPLICATION_TIMEOUT (503, retryable; the same Idempotency-Key gives back this answer).
    if (answer.status < 400) await this.fleet.replicated();
    if (answer.status >= 400) request.problemCode = (answer.body as { code?: string }).code;
    return reply
      .status(answer.status)
      .type(answer.status >= 400 ? "application/problem+json" : "application/json")
      .send(answer.body);
  }

  /** Starts the event tail once Redis accepts the credentials (retried every 2 s until closing). */
  async #startTailLater(): Promise<void> {
    while (this.#closing === undefined) {
      await new Promise((resolve) => setTimeout(resolve, 2000).unref());
      if (this.#closing !== undefined) return;
      try {
        await this.#tail.start();
        return;
      } catch {
        // still refused: the connection's error is logged once (reportRedisErrors)
      }
    }
  }

  /** Ends every event stream, stops listening, closes connections. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Streams first: an open stream would hold the listener's close.
      this.#closingSignal.abort();
      await this.#streams.close().catch(() => undefined);
      await this.app.close().catch(() => undefined);
      await this.#metricsApp?.close().catch(() => undefined);
      await this.#tail.close().catch(() => undefined);
      await closeRedis(this.#tailRedis);
      await this.#labEnv.close().catch(() => undefined);
      await this.#console.close().catch(() => undefined);
      await this.fleet.close();
      await closeRedis(this.#redis);
    })();
    return this.#closing;
  }
}
