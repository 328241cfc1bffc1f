/**
 * The derivative-free minimiser behind both fits (the built-in parameters to
 * the reference rows, `fitParams`, and an engine profile to a user's
 * measurements, `fitEngineParams`): Nelder-Mead, restarted from its own
 * result until a restart gains nothing. The model is piecewise (max() of
 * compute and memory, ceil of passes), so gradients are unreliable; a simplex
 * needs none. Deterministic: no random starts.
 */

export interface Minimum {
  readonly x: number[];
  readonly value: number;
  readonly iterations: number;
}

export interface MinimiseOptions {
  /** Iterations of one Nelder-Mead run (default 800). */
  readonly maxIterations?: number;
  /** Runs, each from the previous one's best point (default 8). */
  readonly maxRestarts?: number;
  /** A restart that gains less than this ends the search (default 1e-5). */
  readonly minGain?: number;
  /** Initial simplex edge along each coordinate (default 0.3). */
  readonly step?: number;
}

/**
 * Minimises `f` from `x0`. The simplex collapses early on flat or ridged
 * landscapes; a fresh simplex around the best point so far escapes that, so
 * runs repeat until one gains less than `minGain`.
 */
export function minimise(f: (x: readonly number[]) => number, x0: readonly number[], opts: MinimiseOptions = {}): Minimum {
  const maxIterations = opts.maxIterations ?? 800;
  const maxRestarts = opts.maxRestarts ?? 8;
  const minGain = opts.minGain ?? 1e-5;
  let x = [...x0];
  let value = f(x);
  let iterations = 0;
  for (let r = 0; r < maxRestarts; r++) {
    const run = nelderMead(f, x, maxIterations, opts.step ?? 0.3);
    iterations += run.iterations;
    const gain = value - run.value;
    if (gain > 0) {
      x = run.x;
      value = run.value;
    }
    if (gain < minGain) break;
  }
  return { x, value, iterations };
}

/** One Nelder-Mead run (reflection 1, expansion 2, contraction 1/2, shrink 1/2). */
export function nelderMead(f: (x: readonly number[]) => number, x0: readonly number[], maxIterations: number, step = 0.3): Minimum {
  const n = x0.length;
  let simplex: number[][] = [[...x0]];
  for (let i = 0; i < n; i++) {
    const x = [...x0];
    x[i] = (x[i] ?? 0) + step;
    simplex.push(x);
  }
  let values = simplex.map(f);
  let it = 0;
  for (; it < maxIterations; it++) {
    const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
    simplex = order.map(([, i]) => simplex[i] as number[]);
    values = order.map(([v]) => v);
    const best = values[0] as number;
    const worst = values[n] as number;
    if (worst - best < 1e-7) break;
    const centroid = new Array<number>(n).fill(0);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) centroid[j] = (centroid[j] as number) + (simplex[i]?.[j] ?? 0) / n;
    const worstX = simplex[n] as number[];
    const along = (t: number): number[] => centroid.map((c, j) => c + t * (c - (worstX[j] ?? 0)));
    const xr = along(1);
    const fr = f(xr);
    if (fr < best) {
      const xe = along(2);
      const fe = f(xe);
      simplex[n] = fe < fr ? xe : xr;
      values[n] = fe < fr ? fe : fr;
    } else if (fr < (values[n - 1] as number)) {
      simplex[n] = xr;
      values[n] = fr;
    } else {
      const xc = along(fr < worst ? 0.5 : -0.5);
      const fc = f(xc);
      if (fc < Math.min(fr, worst)) {
        simplex[n] = xc;
        values[n] = fc;
      } else {
        const xb = simplex[0] as number[];
        for (let i = 1; i <= n; i++) {
          simplex[i] = (simplex[i] as number[]).map((xj, j) => (xb[j] ?? 0) + 0.5 * (xj - (xb[j] ?? 0)));
          values[i] = f(simplex[i] as number[]);
        }
      }
    }
  }
  const bestIndex = values.indexOf(Math.min(...values));
  return { x: simplex[bestIndex] as number[], value: values[bestIndex] as number, iterations: it };
}
