import { LeaseKind, type ProgressEvent } from "@virtfleet/core";
import type { FleetClient, HostView } from "@virtfleet/fleet";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { z } from "zod";
import { requireScope, type TokenStore } from "./auth.js";

/** Who may read /metrics: `token` (a bearer token with `metrics:read` or admin) or `none` (anyone). */
export const MetricsAuth = z.enum(["token", "none"]);
export type MetricsAuth = z.infer<typeof MetricsAuth>;
/** /metrics needs a token unless the operator says otherwise (`VIRTFLEET_METRICS_AUTH=none`). */
export const DEFAULT_METRICS_AUTH: MetricsAuth = "token";
/** How long one read of the hosts and their queues serves scrapes (Redis is read at most this often). */
export const METRICS_CACHE_MS = 5000;

export interface MetricsOptions {
  /** Default METRICS_CACHE_MS. */
  cacheMs?: number;
  /** Leases the reaper has expired, by kind (kept in Redis by the reaper): virtfleet_lease_expiries_total. */
  leaseExpiries?: () => Promise<Record<string, number>>;
}

interface FleetSnapshot {
  hosts: HostView[];
  queues: Map<string, Record<string, number>>;
}

/** Prometheus metrics: jobs by phase, phase durations, queue depth per host, host capacity and allocation. */
export class Metrics {
  readonly registry = new Registry();
  readonly #events: Counter;
  readonly #phaseSeconds: Histogram;
  readonly #lastAt = new Map<string, { phase: string; at: number }>();
  readonly #fleet: FleetClient;
  readonly #cacheMs: number;
  #snapshot: { at: number; value: Promise<FleetSnapshot> } | undefined;
  #expiries: { at: number; value: Promise<Record<string, number>> } | undefined;

  constructor(fleet: FleetClient, options: MetricsOptions = {}) {
    this.#fleet = fleet;
    this.#cacheMs = options.cacheMs ?? METRICS_CACHE_MS;
    collectDefaultMetrics({ register: this.registry, prefix: "virtfleet_api_" });
    this.#events = new Counter({
      name: "virtfleet_job_events_total",
      help: "Progress events seen, by job kind and phase (terminal phases count jobs by end state)",
      labelNames: ["kind", "phase"],
      registers: [this.registry],
    });
    this.#phaseSeconds = new Histogram({
      name: "virtfleet_phase_duration_seconds",
      help: "Time a job spent in a phase before the next one",
      labelNames: ["kind", "phase"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      registers: [this.registry],
    });
    const queueDepth = new Gauge({
      name: "virtfleet_queue_jobs",
      help: "Jobs in each host's queue, by BullMQ state",
      labelNames: ["host", "state"],
      registers: [this.registry],
      collect: async () => {
        const { queues } = await this.#read();
        queueDepth.reset();
        for (const [host, counts] of queues)
          for (const [state, n] of Object.entries(counts)) queueDepth.set({ host, state }, n);
      },
    });
    const hostGauge = (
      name: string,
      help: string,
      pick: (h: Awaited<ReturnType<FleetClient["hosts"]["list"]>>[number]) => { memoryMiB: number; vcpus: number },
    ) => {
      const g: Gauge = new Gauge({
        name,
        help,
        labelNames: ["host", "resource"],
        registers: [this.registry],
        collect: async () => {
          const { hosts } = await this.#read();
          g.reset();
          for (const h of hosts) {
            const v = pick(h);
            g.set({ host: h.status.hostId, resource: "memory_mib" }, v.memoryMiB);
            g.set({ host: h.status.hostId, resource: "vcpus" }, v.vcpus);
          }
        },
      });
    };
    hostGauge("virtfleet_host_capacity", "Room a host offers to VMs", (h) => h.allocation.capacity);
    hostGauge("virtfleet_host_allocated", "Room claimed by VMs on a host", (h) => h.allocation.allocated);
    const up: Gauge = new Gauge({
      name: "virtfleet_host_up",
      help: "1 while a host's heartbeat is alive",
      labelNames: ["host"],
      registers: [this.registry],
      collect: async () => {
        const { hosts } = await this.#read();
        up.reset();
        for (const h of hosts) up.set({ host: h.status.hostId }, h.up ? 1 : 0);
      },
    });
    const leaseExpiries = options.leaseExpiries;
    if (leaseExpiries !== undefined) {
      const expiries: Counter = new Counter({
        name: "virtfleet_lease_expiries_total",
        help: "Leases (claimed VMs, labs) the reaper has expired, by kind; each expiry counts once fleet-wide",
        labelNames: ["kind"],
        registers: [this.registry],
        collect: async () => {
          // Read at most once per cacheMs, like the hosts.
          const now = Date.now();
          if (this.#expiries === undefined || now - this.#expiries.at >= this.#cacheMs) {
            const value = leaseExpiries();
            const cached = { at: now, value };
            this.#expiries = cached;
            value.catch(() => {
              if (this.#expiries === cached) this.#expiries = undefined;
            });
          }
          const counts = await this.#expiries.value;
          expiries.reset();
          for (const kind of new Set([...LeaseKind.options, ...Object.keys(counts)]))
            expiries.inc({ kind }, counts[kind] ?? 0);
        },
      });
    }
    const orphans: Gauge = new Gauge({
      name: "virtfleet_orphans",
      help: "Domains and VM folders a host found that nothing accounts for, left alone (virtfleet ls --orphans)",
      labelNames: ["host"],
      registers: [this.registry],
      collect: async () => {
        const { hosts } = await this.#read();
        orphans.reset();
        for (const h of hosts) orphans.set({ host: h.status.hostId }, h.status.orphans.length);
      },
    });
  }

  /** The hosts and their queue counts: one read serves every scrape within `cacheMs` (and concurrent ones). */
  #read(): Promise<FleetSnapshot> {
    const now = Date.now();
    if (this.#snapshot !== undefined && now - this.#snapshot.at < this.#cacheMs) return this.#snapshot.value;
    const value = (async () => {
      const hosts = await this.#fleet.hosts.list();
      const counts = await Promise.all(hosts.map((h) => this.#fleet.queueCounts(h.status.hostId)));
      return { hosts, queues: new Map(hosts.map((h, i) => [h.status.hostId, counts[i] ?? {}])) };
    })();
    const snapshot = { at: now, value };
    this.#snapshot = snapshot;
    // A failed read is not kept: the next scrape tries again.
    value.catch(() => {
      if (this.#snapshot === snapshot) this.#snapshot = undefined;
    });
    return value;
  }

  /**
   * Serves GET /metrics on `app`; with `auth: "token"`, only to a bearer token with `metrics:read`
   * (or admin): 401 / 403 problem+json otherwise.
   */
  route(app: FastifyInstance, auth: MetricsAuth, tokens: TokenStore): void {
    app.get("/metrics", async (request: FastifyRequest, reply) => {
      if (auth === "token") requireScope(tokens.authenticate(request.headers.authorization), "metrics:read");
      reply.type(this.registry.contentType);
      return this.registry.metrics();
    });
  }

  /** Counts an event and the time its job spent in the phase before it. */
  observe(e: ProgressEvent): void {
    this.#events.inc({ kind: e.kind, phase: e.phase });
    const at = Date.parse(e.at);
    const last = this.#lastAt.get(e.jobId);
    if (last !== undefined && Number.isFinite(at))
      this.#phaseSeconds.observe({ kind: e.kind, phase: last.phase }, Math.max(0, (at - last.at) / 1000));
    if (e.phase === "done" || e.phase === "failed" || e.phase === "cancelled") this.#lastAt.delete(e.jobId);
    else this.#lastAt.set(e.jobId, { phase: e.phase, at });
    if (this.#lastAt.size > 100_000) this.#lastAt.clear();
  }
}
