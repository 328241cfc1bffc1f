/** What the CLI prints of what the gateway says: safe for a terminal, as JSON or as a table. */

/**
 * Characters a terminal may act on rather than show: C0 and C1 controls
 * (ESC starts a control sequence), DEL, line and paragraph separators, and
 * bidirectional overrides, which reorder what is shown.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** Text from the gateway, safe for a terminal: what a terminal would act on is shown escaped (ESC as \x1b). */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** Of those, what JSON.stringify leaves raw in strings (it escapes C0 itself). */
const RAW_IN_JSON = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** JSON for a terminal: still the same JSON, with those characters as \u escapes. */
export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2).replace(RAW_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)}\n`;
}

/** Every cell is made printable: names and labels come from the store, whoever wrote them. */
export function table(header: readonly string[], cells: readonly (readonly string[])[]): string {
  const rows = cells.map((r) => r.map(printable));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => /^-?[\d.]+(e-?\d+)?( \w+)?$|^-$/.test(r[i] ?? "")));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (numeric[i] === true ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}
