import {
  type ErrorCode,
  type ImageImportInput,
  type ImageRecord,
  type ImageViewOut,
  type StreamedEvent,
  type TemplatePutResult,
  type TemplateSpec,
  type TemplateView,
  VirtfleetError,
} from "@virtfleet/core";
import { ApiError, VirtfleetApi } from "@virtfleet/sdk";
import type { Backend, CreateRequest, HostRow, VmRow } from "./backend.js";
import { apiLabs } from "./commands/lab-backends.js";
import type { LabBackend } from "./commands/labs.js";
import { apiLeases } from "./commands/lease-backends.js";
import type { LeaseBackend } from "./commands/leases.js";
import { ApiPoolBackend } from "./pool-backends.js";

/** An API error as the CLI's own kind, so exit codes and --json stay the same. */
export async function translated<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (error) {
    if (error instanceof ApiError) {
      throw new VirtfleetError(
        error.code as ErrorCode,
        error.message,
        error.field === undefined ? {} : { field: error.field.replace(/^body\./, "") },
      );
    }
    throw error;
  }
}

/** The CLI through the HTTP API (`VIRTFLEET_API_URL`, `VIRTFLEET_TOKEN`). */
export class ApiBackend implements Backend {
  readonly kind = "api";
  readonly #api: VirtfleetApi;

  constructor(baseUrl: string, token: string) {
    this.#api = new VirtfleetApi({ baseUrl, token });
  }

  async createVm(r: CreateRequest): Promise<string> {
    const answer = await translated(
      this.#api.createVm({
        spec: r.spec,
        placement: {
          ...(r.host === undefined ? {} : { host: r.host }),
          labels: r.labels,
          ...(r.group === undefined ? {} : { group: r.group }),
          policy: r.policy,
          ...(r.waitForCapacitySec === undefined ? {} : { waitForCapacitySec: r.waitForCapacitySec }),
        },
        ...(r.guestReady === undefined ? {} : { guestReady: r.guestReady }),
      }),
    );
    return answer.jobId;
  }

  async destroyVm(name: string): Promise<string> {
    return (await translated(this.#api.destroyVm(name))).jobId;
  }

  waitJob(jobId: string, onEvent: (e: StreamedEvent) => void): Promise<StreamedEvent> {
    return translated(this.#api.waitJob(jobId, { onEvent }));
  }

  async followBatch(batchId: string, onEvent: (e: StreamedEvent) => void): Promise<void> {
    const follow = async () => {
      for await (const e of this.#api.batchEvents(batchId)) onEvent(e);
    };
    await translated(follow());
  }

  async cancelJob(jobId: string): Promise<string> {
    return (await translated(this.#api.cancelJob(jobId))).outcome;
  }

  async listVms(f: { host?: string; state?: string; label?: Record<string, string> }): Promise<VmRow[]> {
    const label = Object.entries(f.label ?? {})[0];
    const rows = await translated(
      this.#api.listVms({
        ...(f.host === undefined ? {} : { host: f.host }),
        ...(f.state === undefined ? {} : { state: f.state as "running" }),
        ...(label === undefined ? {} : { label: `${label[0]}=${label[1]}` }),
      }),
    );
    return rows.filter((v) => Object.entries(f.label ?? {}).every(([k, val]) => v.labels[k] === val));
  }

  async listHosts(): Promise<HostRow[]> {
    return translated(this.#api.listHosts());
  }

  listImages(): Promise<ImageViewOut[]> {
    return translated(this.#api.listImages());
  }

  importImage(input: ImageImportInput): Promise<ImageRecord> {
    return translated(this.#api.importImage(input));
  }

  async removeImage(name: string): Promise<void> {
    await translated(this.#api.removeImage(name));
  }

  putTemplate(name: string, spec: TemplateSpec): Promise<TemplatePutResult> {
    return translated(this.#api.putTemplate(name, spec));
  }

  listTemplates(): Promise<TemplateView[]> {
    return translated(this.#api.listTemplates());
  }

  getTemplate(name: string): Promise<TemplateView> {
    return translated(this.#api.getTemplate(name));
  }

  async removeTemplate(name: string): Promise<void> {
    await translated(this.#api.removeTemplate(name));
  }

  labs(): LabBackend {
    return apiLabs(this.#api, translated);
  }

  async pools(): Promise<ApiPoolBackend> {
    return new ApiPoolBackend(this.#api);
  }

  leases(): LeaseBackend {
    return apiLeases(this.#api, translated);
  }

  async close(): Promise<void> {}
}
