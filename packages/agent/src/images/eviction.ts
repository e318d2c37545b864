/** A file eviction may remove, with its size and when it was last used (ms). */
export interface EvictionCandidate {
  size: number;
  usedAt: number;
}

/**
 * Which candidates to remove so that `total` bytes fall to `limit` or below: least recently used
 * first, stopping as soon as it is enough. (When the candidates cannot free enough, all of them go.)
 */
export function pickEvictions<C extends EvictionCandidate>(
  candidates: readonly C[],
  total: number,
  limit: number,
): C[] {
  const picked: C[] = [];
  let left = total;
  for (const c of [...candidates].sort((a, b) => a.usedAt - b.usedAt)) {
    if (left <= limit) break;
    picked.push(c);
    left -= c.size;
  }
  return picked;
}
