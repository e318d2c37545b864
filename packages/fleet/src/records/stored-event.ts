import { HostId, JobId, JobKind, Phase, ProgressEvent, type StreamedEvent, VmName } from "@virtfleet/core";

/**
 * Checking events read back from the streams (never trusted) at the rate they arrive. The whole
 * ProgressEvent schema costs every event a zod object parse (~2 µs warm, ~40 µs while the process
 * is young: a follower's first events wait for it); most events are plain (no error, no addresses)
 * and repeat their job's id, VM and host. A plain event is checked here field by field, each name
 * with its own schema the first time it is seen, and comes out exactly as the schema would give it;
 * anything else (an error, addresses, a field the schema strips, a legacy phase, a bad value) is
 * parsed by the schema itself.
 */

/** ProgressEvent's fields a plain event may have. */
const PLAIN_FIELDS = new Set(["jobId", "kind", "vm", "phase", "percent", "message", "host", "at"]);
const KINDS = new Set<string>(JobKind.options);
const PHASES = new Set<string>(Phase.options);

/** How many names of each kind are remembered as valid (then forgotten all at once). */
export const CHECKED_NAMES_MAX = 10_000;

/** Names that passed their schema once. */
class CheckedNames {
  readonly #ok = new Set<string>();
  readonly #schema: { safeParse(value: unknown): { success: boolean } };

  constructor(schema: { safeParse(value: unknown): { success: boolean } }) {
    this.#schema = schema;
  }

  valid(value: unknown): boolean {
    if (typeof value !== "string") return false;
    if (this.#ok.has(value)) return true;
    if (!this.#schema.safeParse(value).success) return false;
    if (this.#ok.size >= CHECKED_NAMES_MAX) this.#ok.clear();
    this.#ok.add(value);
    return true;
  }
}

const jobIds = new CheckedNames(JobId);
const vmNames = new CheckedNames(VmName);
const hostIds = new CheckedNames(HostId);

/**
 * A plain event (only ProgressEvent's own simple fields, all valid) as ProgressEvent.parse would
 * give it (a new object, the schema's field order); undefined for anything else.
 */
export function plainEvent(json: unknown): ProgressEvent | undefined {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  const o = json as Record<string, unknown>;
  for (const key of Object.keys(o)) if (!PLAIN_FIELDS.has(key)) return undefined;
  const { jobId, kind, vm, phase, percent, message, host, at } = o;
  if (typeof kind !== "string" || !KINDS.has(kind)) return undefined;
  if (typeof phase !== "string" || !PHASES.has(phase)) return undefined;
  if (typeof percent !== "number" || !(percent >= 0 && percent <= 100)) return undefined;
  if (typeof message !== "string" || typeof at !== "string") return undefined;
  if (!jobIds.valid(jobId) || !vmNames.valid(vm)) return undefined;
  if ("host" in o && !hostIds.valid(host)) return undefined;
  const event = { jobId, kind, vm, phase, percent, message } as ProgressEvent;
  if ("host" in o) event.host = host as string;
  event.at = at;
  return event;
}

/** An event read back from Redis (its JSON parsed), checked; undefined when it is not one. */
export function storedEvent(json: unknown, id: string): StreamedEvent | undefined {
  let event: ProgressEvent | undefined = plainEvent(json);
  if (event === undefined) {
    const parsed = ProgressEvent.safeParse(json);
    if (!parsed.success) return undefined;
    event = parsed.data;
  }
  // A new object either way (zod's, or plainEvent's): given its id in place, not copied.
  const streamed = event as StreamedEvent;
  streamed.id = id;
  return streamed;
}
