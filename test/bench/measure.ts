/** What the benchmark's sections share: CPU accounting, Redis counters, deadlines, rounding. */
import { Redis } from "ioredis";

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

export function table(title: string, rows: Record<string, string | number>[]): void {
  process.stdout.write(`\n${title}\n`);
  console.table(rows);
}

/** The median of `values` (the lower middle one for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? 0;
}

/** Waits for `p`, or fails the run after 5 minutes (a lost completion must not hang the bench). */
export async function withDeadline<T>(p: Promise<T>, what: string, ms = 300_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not all arrived within ${ms / 1000} s`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** CPU seconds used so far by this process and by the Redis server. */
export async function cpuNow(url: string): Promise<{ node: number; redis: number }> {
  const r = new Redis(url);
  const info = await r.info("cpu");
  r.disconnect();
  const field = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  const u = process.cpuUsage();
  return { node: (u.user + u.system) / 1e6, redis: field("used_cpu_user") + field("used_cpu_sys") };
}

/** CPU seconds each side spent since `before` (rounded to 0.1 s; `exact` keeps every digit). */
export async function cpuSince(url: string, before: { node: number; redis: number }, exact = false) {
  const now = await cpuNow(url);
  const r = (n: number) => (exact ? n : round(n, 1));
  return { nodeCpuS: r(now.node - before.node), redisCpuS: r(now.redis - before.redis) };
}

/** Empties Redis between rounds, so each starts from the same state. */
export async function emptyRedis(url: string): Promise<void> {
  const r = new Redis(url);
  try {
    await r.flushall();
  } finally {
    r.disconnect();
  }
}

export interface Round {
  seconds: number;
  cpu: { nodeCpuS: number; redisCpuS: number };
}
