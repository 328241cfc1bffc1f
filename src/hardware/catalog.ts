import { allHardware, type HardwareSpec } from "./accelerators.js";
import { allModels, type ModelSpec } from "./models.js";
import { PRECISIONS, type PrecisionSpec } from "./precision.js";

/** Everything the hardware model knows by name, each entry with its cited figures: what `flotilla catalog` prints. */
export interface Catalog {
  readonly hardware: readonly HardwareSpec[];
  readonly models: readonly ModelSpec[];
  readonly precisions: readonly PrecisionSpec[];
}

export function catalog(): Catalog {
  return { hardware: allHardware(), models: allModels(), precisions: PRECISIONS };
}
