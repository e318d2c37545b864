/** How far back `targetReady: auto` looks at claims. */
export const AUTOSCALE_WINDOW_MS = 10 * 60_000;
/** How many recent create-to-ready durations `targetReady: auto` keeps (it uses their median). */
export const AUTOSCALE_MAKE_SAMPLES = 20;

export interface AutoscaleInput {
  minReady: number;
  max: number;
  /** When recent claims happened (ms since the epoch); those older than the window are ignored. */
  claimTimes: readonly number[];
  /** How long recent VMs of the pool took from create to ready (ms). */
  makeDurationsMs: readonly number[];
  now: number;
  windowMs?: number;
}

/** The median of some numbers (undefined for none). */
export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/**
 * Ready VMs a `targetReady: auto` pool keeps: max(minReady, claims per minute over the window ×
 * minutes to make one VM (the median of recent create-to-ready durations)), rounded up, capped at
 * `max`. With no claims, or no VM made yet, it is minReady.
 */
export function autoscaleTarget(input: AutoscaleInput): number {
  const windowMs = input.windowMs ?? AUTOSCALE_WINDOW_MS;
  const since = input.now - windowMs;
  const claims = input.claimTimes.filter((t) => t > since && t <= input.now).length;
  const makeMs = median(input.makeDurationsMs) ?? 0;
  const perMinute = claims / (windowMs / 60_000);
  const wanted = Math.ceil(perMinute * (makeMs / 60_000) - 1e-9);
  return Math.min(input.max, Math.max(input.minReady, wanted));
}
