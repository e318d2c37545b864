import {
  type GuestReadyInput,
  GuestReadyOptions,
  PlacementOptions,
  parseOrThrow,
  WaitForCapacityMs,
} from "@virtfleet/core";
import type { QuotaLimits } from "../admission/quota.js";

/** A create's options (createVm, createVms, createBatch). */
export interface CreateOptions {
  /** Pin the VM to this host. */
  host?: string;
  /** Only hosts with all these labels. */
  labels?: Record<string, string>;
  /** Anti-affinity group: its VMs go to different hosts where possible. */
  group?: string;
  /** `spread` (default) or `pack`. */
  policy?: "spread" | "pack";
  /** When no host has room, keep trying this long before NO_CAPACITY. Default 0. */
  waitForCapacityMs?: number;
  /** The API tenant that will own the VM; its quota is enforced at admission. */
  tenant?: string;
  quota?: QuotaLimits;
  /** Batches the tenant may keep stored at once. Default DEFAULT_MAX_BATCHES_PER_TENANT. */
  maxBatches?: number;
  /** Set by createBatch. */
  batchId?: string;
  /** Terminal events are POSTed here (by the API's webhook dispatcher). */
  callbackUrl?: string;
  /**
   * Wait until the guest is ready (`true`: its console prints VIRTFLEET_READY): by `strategy`
   * (`console`, `agent`, `ip`, `cloud-init`) within `timeoutSec` (a default per strategy).
   */
  guestReady?: GuestReadyInput | boolean;
}

/** Options of one item of a batch that differ from the batch's own (e.g. each lab VM's template). */
export interface BatchItemOptions {
  /** This item's readiness wait, instead of the batch's `guestReady`. */
  guestReady?: GuestReadyInput | boolean;
}

/** A create's placement and guest-ready options, parsed. */
export interface ParsedOptions {
  placement: PlacementOptions;
  guestReady: GuestReadyOptions | undefined;
}

/** The placement and guest-ready options of a create, parsed (a bad one throws ValidationError). */
export function parseCreateOptions(options: CreateOptions): ParsedOptions {
  const placement = parseOrThrow(
    PlacementOptions,
    {
      ...(options.host === undefined ? {} : { host: options.host }),
      ...(options.labels === undefined ? {} : { requiredLabels: options.labels }),
      ...(options.group === undefined ? {} : { group: options.group }),
      ...(options.policy === undefined ? {} : { policy: options.policy }),
    },
    "placement",
  );
  const guestReady =
    options.guestReady === undefined || options.guestReady === false
      ? undefined
      : parseOrThrow(GuestReadyOptions, options.guestReady === true ? {} : options.guestReady, "guestReady");
  parseOrThrow(WaitForCapacityMs, options.waitForCapacityMs, "waitForCapacityMs");
  return { placement, guestReady };
}
