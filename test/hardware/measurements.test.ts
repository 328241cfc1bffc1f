import { test } from "node:test";
import assert from "node:assert/strict";
import { MeasurementsError, parseMeasurementsCsv, splitCsvLine } from "../../src/hardware/measurements.js";

const HEADER = "hardware,model,precision,tp,batch,input_tokens,output_tokens,ttft_ms,tpot_ms";

function fails(text: string, pattern: RegExp): void {
  assert.throws(() => parseMeasurementsCsv(text, "bench.csv"), (e: unknown) => e instanceof MeasurementsError && pattern.test(e.message), `expected ${pattern}`);
}

test("reads rows by header name, with comments, aliases, quotes and optional columns", () => {
  const text = [
    "# measured with some engine",
    "Model,Hardware,Precision,TP,Batch,Input_Tokens,Output_Tokens,TPOT_ms,TTFT_ms,power_w,source,notes",
    'llama2-70b,a100-80gb,fp16,2,8,512,128,61.7,1597,350,"run 1, warm",x',
    "",
    "llama-2-70b,h100,bf16,4,1,512,128,29.7,,,,",
  ].join("\r\n");
  const { rows, ignoredColumns } = parseMeasurementsCsv(text, "bench.csv");
  assert.equal(rows.length, 2);
  const [a, b] = rows;
  assert.equal(a!.line, 3);
  assert.equal(a!.hardware.id, "a100");
  assert.equal(a!.model.id, "llama-2-70b");
  assert.equal(a!.precision.id, "bf16");
  assert.deepEqual([a!.tp, a!.batch, a!.inputTokens, a!.outputTokens, a!.ttftMs, a!.tpotMs, a!.powerW], [2, 8, 512, 128, 1597, 61.7, 350]);
  assert.equal(b!.ttftMs, undefined, "an empty cell is no measurement");
  assert.equal(b!.tpotMs, 29.7);
  assert.deepEqual(ignoredColumns, ["notes"]);
});

test("splits quoted fields", () => {
  assert.deepEqual(splitCsvLine('a, "b, c" ,"say ""hi""",'), ["a", "b, c", 'say "hi"', ""]);
});

test("an empty file, or a header alone, is an error that says what is expected", () => {
  fails("", /bench\.csv is empty: expected a header line naming the columns hardware, model, precision, tp, batch, input_tokens, output_tokens, ttft_ms, tpot_ms/);
  fails("# only a comment\n\n", /is empty/);
  fails(`${HEADER}\n`, /bench\.csv:1: the header is there but no measurement rows follow it/);
});

test("a missing column is named, with the header as it is", () => {
  fails("hardware,model,precision,batch,input_tokens,output_tokens,tpot_ms\nh100,llama-2-70b,bf16,1,512,128,30\n", /bench\.csv:1: missing column "tp"; the header has: hardware, model/);
  fails("hardware,model,precision,tp,batch,input_tokens,output_tokens\nh100,llama-2-70b,bf16,1,1,512,128\n", /no measured column: give "ttft_ms", "tpot_ms" or both/);
  fails("hardware,model,precision,tp,tp,batch,input_tokens,output_tokens,tpot_ms\n", /column "tp" appears twice/);
});

test("unknown hardware and models name the row, the column and the known ids", () => {
  fails(`${HEADER}\nh900,llama-2-70b,bf16,1,1,512,128,50,30\n`, /bench\.csv:2: column "hardware": unknown hardware "h900" \(did you mean h100, h200 or a100\?\); known: .*h100/);
  fails(`${HEADER}\nh100,llama-9,bf16,1,1,512,128,50,30\n`, /bench\.csv:2: column "model": unknown model "llama-9" \(did you mean llama-7b\?\); known: /);
  fails(`${HEADER}\nh100,llama-2-70b,int3,1,1,512,128,50,30\n`, /bench\.csv:2: column "precision": unknown precision "int3"/);
});

test("values that are not numbers, out of range or missing name the row and column", () => {
  fails(`${HEADER}\nh100,llama-2-70b,bf16,two,1,512,128,50,30\n`, /bench\.csv:2: column "tp": "two" is not a number/);
  fails(`${HEADER}\nh100,llama-2-70b,bf16,2,1.5,512,128,50,30\n`, /bench\.csv:2: column "batch": 1\.5 must be a whole number of at least 1/);
  fails(`${HEADER}\nh100,llama-2-70b,bf16,2,1,512,128,fast,30\n`, /bench\.csv:2: column "ttft_ms": "fast" is not a number/);
  fails(`${HEADER}\nh100,llama-2-70b,bf16,2,1,512,128,-5,30\n`, /column "ttft_ms": -5 must be greater than 0/);
  fails(`${HEADER}\nh100,llama-2-70b,bf16,2,1,,128,50,30\n`, /column "input_tokens" is empty/);
  fails(`${HEADER}\nh100,llama-2-70b,bf16,2,1,512,128,,\n`, /bench\.csv:2: no measurement: both "ttft_ms" and "tpot_ms" are empty/);
  fails(`${HEADER}\nh100,llama-2-70b,bf16,2,1,512,128,50\n`, /bench\.csv:2: 8 fields, but the header has 9/);
});

test("every problem is reported at once, and a repeated one once with a count", () => {
  const rows = Array.from({ length: 30 }, () => "h900,llama-2-70b,bf16,2,1,512,128,50,30");
  try {
    parseMeasurementsCsv([HEADER, "h100,llama-2-70b,bf16,x,1,512,128,50,30", ...rows].join("\n"), "bench.csv");
    assert.fail("expected an error");
  } catch (err) {
    assert.ok(err instanceof MeasurementsError);
    assert.match(err.message, /bench\.csv has problems:/);
    assert.match(err.message, /bench\.csv:2: column "tp": "x" is not a number/);
    assert.match(err.message, /bench\.csv:3 \(and 29 more rows\): column "hardware": unknown hardware "h900"/);
  }
});
