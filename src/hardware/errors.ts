/** Raised when a model, hardware or precision name is not in the catalog. */
export type CatalogKind = "model" | "hardware" | "precision";

export class UnknownNameError extends Error {
  readonly kind: CatalogKind;
  readonly requested: string;
  readonly known: readonly string[];

  constructor(kind: CatalogKind, requested: string, known: readonly string[]) {
    super(`unknown ${kind} "${requested}"; known: ${known.join(", ")}`);
    this.name = "UnknownNameError";
    this.kind = kind;
    this.requested = requested;
    this.known = known;
  }
}
