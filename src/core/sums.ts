/**
 * Totals of some numeric fields over a list: per-replica counters summed into
 * fleet figures, as the gateway's Observatory and the simulator's report
 * both take them.
 */
export function sums<K extends string>(items: Iterable<Readonly<Record<K, number>>>, keys: readonly K[]): Record<K, number> {
  const total = {} as Record<K, number>;
  for (const k of keys) total[k] = 0;
  for (const item of items) for (const k of keys) total[k] += item[k];
  return total;
}
