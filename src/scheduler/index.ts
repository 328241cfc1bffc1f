export * from "./pipeline.js";
export * from "./filters.js";
export * from "./scorers.js";
export * from "./pickers.js";
export * from "./policies.js";
