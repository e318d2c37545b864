import type { ProgressEvent } from "@virtfleet/core";
import type { FleetClient } from "@virtfleet/queue";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** Prometheus metrics: jobs by phase, phase durations, queue depth per host, host capacity and allocation. */
export class Metrics {
  readonly registry = new Registry();
  readonly #events: Counter;
  readonly #phaseSeconds: Histogram;
  readonly #lastAt = new Map<string, { phase: string; at: number }>();

  constructor(fleet: FleetClient) {
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
        queueDepth.reset();
        for (const h of await fleet.hosts.list()) {
          const counts = await fleet.queueCounts(h.status.hostId);
          for (const [state, n] of Object.entries(counts)) queueDepth.set({ host: h.status.hostId, state }, n);
        }
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
          g.reset();
          for (const h of await fleet.hosts.list()) {
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
        up.reset();
        for (const h of await fleet.hosts.list()) up.set({ host: h.status.hostId }, h.up ? 1 : 0);
      },
    });
    const orphans: Gauge = new Gauge({
      name: "virtfleet_orphans",
      help: "Domains and VM folders a host found that nothing accounts for, left alone (virtfleet ls --orphans)",
      labelNames: ["host"],
      registers: [this.registry],
      collect: async () => {
        orphans.reset();
        for (const h of await fleet.hosts.list()) orphans.set({ host: h.status.hostId }, h.status.orphans.length);
      },
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
