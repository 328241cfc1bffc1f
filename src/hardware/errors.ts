/** Raised when a model, hardware or precision name is not in the catalog. */
export type CatalogKind = "model" | "hardware" | "precision";

/**
 * A name the catalog does not know exactly. It is never taken for a nearby
 * one (llama-3-70b is not llama-3.1-70b: another context window); the
 * message suggests the nearest instead, then lists them all.
 */
export class UnknownNameError extends Error {
  readonly kind: CatalogKind;
  readonly requested: string;
  readonly known: readonly string[];

  constructor(kind: CatalogKind, requested: string, known: readonly string[]) {
    const near = nearNames(requested, known);
    super(`unknown ${kind} "${requested}"${near.length > 0 ? ` (did you mean ${orList(near)}?)` : ""}; known: ${known.join(", ")}`);
    this.name = "UnknownNameError";
    this.kind = kind;
    this.requested = requested;
    this.known = known;
  }
}

/**
 * Up to three known names within a few edits of `name` (a third of its
 * length, at least 2), or that `name` is an abbreviation of (mixtral of
 * mixtral-8x7b): those first (llama-3-70b lacks only characters of
 * llama-3.1-70b), then by the edits.
 */
export function nearNames(name: string, known: readonly string[]): string[] {
  const want = name.trim().toLowerCase();
  const most = Math.max(2, Math.floor(want.length / 3));
  return known
    .map((k) => ({ k, d: editDistance(want, k.toLowerCase()), within: isSubsequence(want, k.toLowerCase()) }))
    .filter((x) => x.d <= most || (x.within && want.length >= 4))
    .sort((a, b) => Number(b.within) - Number(a.within) || a.d - b.d || a.k.localeCompare(b.k))
    .slice(0, 3)
    .map((x) => x.k);
}

function isSubsequence(short: string, long: string): boolean {
  let i = 0;
  for (const c of long) if (c === short[i]) i++;
  return i === short.length;
}

const orList = (names: readonly string[]): string => (names.length === 1 ? names[0]! : `${names.slice(0, -1).join(", ")} or ${names.at(-1)}`);

/** Levenshtein distance, one row at a time. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length]!;
}
