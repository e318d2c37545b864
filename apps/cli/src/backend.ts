import type {
  GuestReadyInput,
  ImageImportInput,
  ImageRecord,
  ImageViewOut,
  StreamedEvent,
  TemplatePutResult,
  TemplateSpec,
  TemplateView,
  VmSpec,
} from "@virtfleet/core";
import type { LabBackend } from "./commands/labs.js";
import type { LeaseBackend } from "./commands/leases.js";
import type { PoolBackend } from "./commands/pools.js";

/** One create, as the CLI asks for it. */
export interface CreateRequest {
  spec: VmSpec;
  host?: string;
  labels: Record<string, string>;
  group?: string;
  policy: "spread" | "pack";
  waitForCapacitySec?: number;
  guestReady?: GuestReadyInput;
}

export interface VmRow {
  name: string;
  hostId: string;
  state: string;
  memoryMiB: number;
  vcpus: number;
  labels: Record<string, string>;
  group?: string;
  jobId: string;
  /** The guest's IP addresses, once its agent (or DHCP) reported them. */
  addresses?: string[];
  updatedAt: string;
}

export interface HostRow {
  hostId: string;
  up: boolean;
  draining: boolean;
  virtTypes: string[];
  labels: Record<string, string>;
  capacity: { memoryMiB: number; vcpus: number };
  allocated: { memoryMiB: number; vcpus: number };
  diskFreeGiB: number;
  runningVms: number;
}

/** Templates: named, versioned VM specs (`virtfleet templates`). */
export interface TemplatesBackend {
  /** Stores a template; a changed spec makes a new version. */
  putTemplate(name: string, spec: TemplateSpec): Promise<TemplatePutResult>;
  listTemplates(): Promise<TemplateView[]>;
  /** A template, or NOT_FOUND. */
  getTemplate(name: string): Promise<TemplateView>;
  /** NOT_FOUND: none; NAME_CLASH: a pool makes VMs from it. */
  removeTemplate(name: string): Promise<void>;
}

/**
 * What the CLI needs of the fleet: straight through Redis (`REDIS_URL`), or through the HTTP API
 * when `VIRTFLEET_API_URL` and `VIRTFLEET_TOKEN` are set. Errors are VirtfleetErrors either way.
 */
export interface Backend extends TemplatesBackend {
  readonly kind: "redis" | "api";
  createVm(request: CreateRequest): Promise<string>;
  destroyVm(name: string, host?: string): Promise<string>;
  waitJob(jobId: string, onEvent: (e: StreamedEvent) => void): Promise<StreamedEvent>;
  /** Follows every job of a batch until all have ended, passing on each event (NOT_FOUND: no batch). */
  followBatch(batchId: string, onEvent: (e: StreamedEvent) => void): Promise<void>;
  cancelJob(jobId: string): Promise<string>;
  listVms(filter: { host?: string; state?: string; label?: Record<string, string> }): Promise<VmRow[]>;
  listHosts(): Promise<HostRow[]>;
  /** The image catalogue (through the API, `hosts` only for a token with hosts:read). */
  listImages(): Promise<ImageViewOut[]>;
  /** Catalogues an image; a file import waits up to `timeoutMs` for its host (Redis only). */
  importImage(input: ImageImportInput, timeoutMs: number): Promise<ImageRecord>;
  removeImage(name: string): Promise<void>;
  /** Labs (`virtfleet lab …`). */
  labs(): LabBackend;
  /** Warm pools (`virtfleet pool …`). */
  pools(): Promise<PoolBackend>;
  /** Leases of claimed VMs and labs (`virtfleet lease …`). */
  leases(): LeaseBackend;
  close(): Promise<void>;
}
