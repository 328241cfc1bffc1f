import js from "@eslint/js";
import tseslint from "typescript-eslint";

/**
 * The layers of src/, lowest first. A folder imports only from the folders
 * before it: core knows nothing above it, the gateway may use everything
 * but the CLI. README ("Layout") lists the same order.
 */
export const LAYERS = ["core", "gguf", "hardware", "engines", "scheduler", "sim", "fleet", "store", "metering", "obs", "gateway", "cli"];

const layerRules = LAYERS.map((layer, i) => {
  const above = LAYERS.slice(i + 1);
  return {
    files: [`src/${layer}/**/*.ts`],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: above.length === 0 ? [] : [
            {
              group: above.flatMap((up) => [`../${up}/*`, `../../${up}/*`]),
              message: `src/${layer}/ may import only from ${LAYERS.slice(0, i).join(", ") || "nothing else in src"} (the layers, README "Layout"): move what both need down a layer, or pass it in from above.`,
            },
          ],
        },
      ],
    },
  };
});

export default tseslint.config(
  { ignores: ["dist/", ".test-build/", "node_modules/", "scratch/", "bench/out/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: "readonly", console: "readonly", performance: "readonly", URL: "readonly", setTimeout: "readonly", clearTimeout: "readonly", setInterval: "readonly", clearInterval: "readonly", AbortController: "readonly", AbortSignal: "readonly", TextDecoder: "readonly", fetch: "readonly", Headers: "readonly", Buffer: "readonly", setImmediate: "readonly" } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      eqeqeq: ["error", "always", { null: "ignore" }],
    },
  },
  ...layerRules,
  {
    // On Node 20, abort() with no reason builds a DOMException and its stack trace (10-12 us an abort against 3-5 us with a reason, measured on a built signal): on the
    // request path every abort passes a reason made once (core/abort.ts NO_LONGER_NEEDED, or one of its own).
    files: ["src/core/**/*.ts", "src/engines/*.ts", "src/scheduler/**/*.ts", "src/gateway/*.ts"],
    rules: {
      "no-restricted-syntax": [
        "error",
        { selector: "CallExpression[callee.property.name='abort'][arguments.length=0]", message: "abort() needs a reason here: pass one made once (core/abort.ts NO_LONGER_NEEDED), not a new DOMException per call." },
      ],
    },
  },
  {
    // Small functions with one job. A declarative table (a catalog, a schema) may run longer: switch the rule
    // off for that one line, with a comment saying it is a table.
    files: ["src/**/*.ts", "src/**/*.js"],
    rules: { "max-lines-per-function": ["error", { max: 80, skipBlankLines: true, skipComments: true }] },
  },
);
