import { Duration, type LabView, parseOrThrow } from "@virtfleet/core";
import type { FleetClient } from "@virtfleet/fleet";
import { LabKeys, LabService, LeaseStore, TemplateStore } from "@virtfleet/labs";
import type { VirtfleetApi } from "@virtfleet/sdk";
import type { LabBackend } from "./labs.js";

/** The `lab` commands straight on Redis. */
export function redisLabs(fleet: FleetClient, prefix: string, ready: () => Promise<void>): LabBackend {
  let service: LabService | undefined;
  const labs = async (): Promise<LabService> => {
    await ready();
    if (service === undefined) {
      const redis = fleet.connect();
      const keys = new LabKeys(prefix);
      service = new LabService({
        redis,
        keys,
        fleet,
        templates: new TemplateStore(redis, keys),
        leases: new LeaseStore(redis, keys),
      });
      closers.push(async () => {
        redis.disconnect();
      });
    }
    return service;
  };
  const closers: (() => Promise<void>)[] = [];
  return {
    up: async (request) => (await labs()).up(request),
    list: async () => (await labs()).list(),
    get: async (name) => (await labs()).require(name),
    extend: async (name, by) => (await labs()).extend(name, parseOrThrow(Duration, by, "duration")),
    down: async (name) => (await labs()).down(name),
    close: async () => {
      for (const close of closers) await close();
    },
  };
}

/** The `lab` commands through the HTTP API. */
export function apiLabs(api: VirtfleetApi, translated: <T>(call: Promise<T>) => Promise<T>): LabBackend {
  return {
    up: (request) => translated(api.upLab(request)),
    list: () => translated(api.listLabs()),
    get: (name) => translated(api.getLab(name)),
    extend: (name, by) => translated(api.extendLab(name, by)),
    down: (name): Promise<LabView> => translated(api.downLab(name)),
    close: async () => undefined,
  };
}
