/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4,
 * what vLLM, SGLang, llama-server and Flotilla serve on /metrics): comments,
 * HELP and TYPE lines, samples with labels (escaped quotes, backslashes and
 * line feeds in values), NaN and ±Inf, optional timestamps.
 *
 * Strict because what it reads steers routing: a line it cannot read is an
 * error naming the line, never a guess, so an engine that answers /metrics
 * with an HTML page or a truncated body is reported rather than read as
 * "no load". (npm's parse-prometheus-text-format, unreleased since 2019,
 * accepts such text as metrics with empty values.)
 */

/** One sample line. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** NaN and ±Infinity as written. */
  readonly value: number;
  readonly timestampMs: number | undefined;
}

/** Text that is not the exposition format; `line` is 1-based. */
export class ExpositionError extends Error {
  constructor(
    readonly line: number,
    reason: string,
    text: string,
  ) {
    super(`line ${line}: ${reason}: ${JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text)}`);
    this.name = "ExpositionError";
  }
}

const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const FLOAT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const TIMESTAMP = /^-?\d+$/;
// Sticky: matched at the reader's cursor.
const SAMPLE_NAME = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;
const LABEL_NAME = /[a-zA-Z_][a-zA-Z0-9_]*/y;

/** Every sample of `text`, in order; throws ExpositionError at the first line that is not the format. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  const typed = new Set<string>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    // A CRLF line end is the same line; anything else stray is the line's own problem.
    const line = lines[i]!.endsWith("\r") ? lines[i]!.slice(0, -1) : lines[i]!;
    const trimmed = line.trim();
    if (trimmed === "") continue;
    if (trimmed.startsWith("#")) readComment(trimmed, i + 1, typed);
    else samples.push(new SampleReader(line, i + 1).read());
  }
  return samples;
}

/** HELP and TYPE are checked (a second TYPE for one name is an error, as Prometheus has it); other comments are skipped. */
function readComment(line: string, n: number, typed: Set<string>): void {
  const words = line.slice(1).trim().split(/[ \t]+/);
  const keyword = words[0];
  if (keyword !== "HELP" && keyword !== "TYPE") return;
  const name = words[1];
  if (name === undefined || !METRIC_NAME.test(name)) throw new ExpositionError(n, `${keyword} needs a metric name`, line);
  if (keyword === "HELP") {
    const doc = line.slice(line.indexOf(name, line.indexOf("HELP") + 4) + name.length);
    if (/\\(?![\\n])/.test(doc.replace(/\\\\/g, ""))) throw new ExpositionError(n, "HELP text may escape only \\\\ and \\n", line);
    return;
  }
  if (words.length !== 3 || !TYPES.has(words[2]!)) throw new ExpositionError(n, `TYPE must be one of ${[...TYPES].join(", ")}`, line);
  if (typed.has(name)) throw new ExpositionError(n, `a second TYPE for ${name}`, line);
  typed.add(name);
}

/** `name[{label="value",...}] value [timestamp]`, read left to right with a cursor. */
class SampleReader {
  #at = 0;

  constructor(
    readonly line: string,
    readonly n: number,
  ) {}

  read(): Sample {
    this.#blanks();
    const name = this.#name(SAMPLE_NAME, "a metric name");
    const labels = this.line[this.#at] === "{" ? this.#labels() : {};
    if (this.#blanks() === 0) this.#fail(this.#at >= this.line.length ? "no value" : "expected a blank before the value");
    const value = parseValue(this.#word());
    if (value === undefined) this.#fail("the value is not a number");
    let timestampMs: number | undefined;
    if (this.#blanks() > 0 && this.#at < this.line.length) {
      const ts = this.#word();
      if (!TIMESTAMP.test(ts)) this.#fail("the timestamp is not an integer (milliseconds)");
      timestampMs = Number(ts);
      this.#blanks();
    }
    if (this.#at < this.line.length) this.#fail("unexpected text after the sample");
    return { name, labels, value: value!, timestampMs };
  }

  #labels(): Record<string, string> {
    const labels: Record<string, string> = {};
    this.#at++; // {
    for (;;) {
      this.#blanks();
      if (this.line[this.#at] === "}") break;
      const label = this.#name(LABEL_NAME, "a label name");
      if (Object.hasOwn(labels, label)) this.#fail(`label ${label} given twice`);
      this.#blanks();
      this.#expect("=");
      this.#blanks();
      labels[label] = this.#quoted();
      this.#blanks();
      if (this.line[this.#at] === "}") break;
      this.#expect(",");
    }
    this.#at++; // }
    return labels;
  }

  /** A label value: `"`, then text in which `\\`, `\"` and `\n` are the only escapes, then `"`. */
  #quoted(): string {
    this.#expect('"');
    let value = "";
    for (;;) {
      const c = this.line[this.#at++];
      if (c === undefined) this.#fail("a label value never ends");
      if (c === '"') return value;
      if (c !== "\\") {
        value += c;
        continue;
      }
      const e = this.line[this.#at++];
      if (e === "\\" || e === '"') value += e;
      else if (e === "n") value += "\n";
      else this.#fail("a label value may escape only \\\\, \\\" and \\n");
    }
  }

  #name(pattern: RegExp, what: string): string {
    pattern.lastIndex = this.#at;
    const m = pattern.exec(this.line);
    if (m === null) this.#fail(`expected ${what}`);
    this.#at += m![0].length;
    return m![0];
  }

  #expect(c: string): void {
    if (this.line[this.#at] !== c) this.#fail(`'${c}' expected at column ${this.#at + 1}`);
    this.#at++;
  }

  /** Skips blanks and tabs; how many. */
  #blanks(): number {
    const from = this.#at;
    while (this.line[this.#at] === " " || this.line[this.#at] === "\t") this.#at++;
    return this.#at - from;
  }

  #word(): string {
    const from = this.#at;
    while (this.#at < this.line.length && this.line[this.#at] !== " " && this.line[this.#at] !== "\t") this.#at++;
    return this.line.slice(from, this.#at);
  }

  #fail(reason: string): never {
    throw new ExpositionError(this.n, reason, this.line);
  }
}

/** A decimal float, or NaN / Inf / +Inf / -Inf in any case (as Go's ParseFloat, which Prometheus uses, reads them). */
function parseValue(word: string): number | undefined {
  if (FLOAT.test(word)) return Number(word);
  switch (word.toLowerCase()) {
    case "nan":
      return NaN;
    case "inf":
    case "+inf":
      return Infinity;
    case "-inf":
      return -Infinity;
    default:
      return undefined;
  }
}
