import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CascadeConfigError, compileCascade, decideCascade, meanLogprob, shouldEscalate } from "../../src/scheduler/index.js";

const cascade = compileCascade({
  light: "small-model",
  heavy: "big-model",
  escalate: { reasoningEffort: ["high"], minPromptTokens: 8000, keywords: ["prove", "step by step", "C++"], minMeanLogprob: -1.2 },
});

describe("cascade: up-front decision", () => {
  it("runs the light model by default", () => {
    assert.deepEqual(decideCascade(cascade, { promptTokens: 100, text: "hello there", reasoningEffort: "low" }), { leg: "light", model: "small-model", reason: "default" });
    assert.equal(decideCascade(cascade, {}).leg, "light");
  });
  it("honours an explicit hint first", () => {
    assert.deepEqual(decideCascade(cascade, { hint: "heavy" }), { leg: "heavy", model: "big-model", reason: "hint" });
    assert.equal(decideCascade(cascade, { hint: "light", reasoningEffort: "high", promptTokens: 99_999 }).leg, "light");
  });
  it("escalates on a listed reasoning effort, case-insensitively", () => {
    assert.deepEqual(decideCascade(cascade, { reasoningEffort: "High" }), { leg: "heavy", model: "big-model", reason: "reasoning_effort" });
    assert.equal(decideCascade(cascade, { reasoningEffort: "medium" }).leg, "light");
  });
  it("escalates long prompts", () => {
    assert.equal(decideCascade(cascade, { promptTokens: 8000 }).reason, "prompt_length");
    assert.equal(decideCascade(cascade, { promptTokens: 7999 }).leg, "light");
  });
  it("escalates on keywords: whole words or phrases, any case, special characters literal", () => {
    assert.deepEqual(decideCascade(cascade, { text: "Please PROVE that it halts" }), { leg: "heavy", model: "big-model", reason: "keyword", keyword: "PROVE" });
    assert.equal(decideCascade(cascade, { text: "think it through step by step" }).keyword, "step by step");
    assert.equal(decideCascade(cascade, { text: "write it in C++ please" }).keyword, "C++");
    assert.equal(decideCascade(cascade, { text: "an improved proverb" }).leg, "light", "not inside another word");
    assert.equal(decideCascade(cascade, { text: "write it in Cx" }).leg, "light");
  });
  it("works with no escalation rules at all", () => {
    const c = compileCascade({ light: "a", heavy: "b" });
    assert.equal(decideCascade(c, { reasoningEffort: "high", promptTokens: 1e6, text: "prove" }).leg, "light");
    assert.equal(shouldEscalate(c, -99), false);
  });
});

describe("cascade: after the light leg", () => {
  it("escalates when the mean token logprob falls below the threshold", () => {
    assert.equal(shouldEscalate(cascade, -1.5), true);
    assert.equal(shouldEscalate(cascade, -1.2), false);
    assert.equal(shouldEscalate(cascade, -0.3), false);
  });
  it("does not escalate without logprobs", () => {
    assert.equal(shouldEscalate(cascade, undefined), false);
    assert.equal(shouldEscalate(cascade, meanLogprob([])), false);
  });
  it("meanLogprob averages", () => {
    assert.equal(meanLogprob([-1, -2, -3]), -2);
    assert.equal(meanLogprob(Float64Array.of(-0.5)), -0.5);
  });
});

describe("cascade config", () => {
  it("names every problem", () => {
    assert.throws(
      () => compileCascade({ light: "", heavy: 3, escalate: { reasoningEffort: "high", minPromptTokens: 0, minMeanLogprob: 1, keywords: [""], other: 1 }, x: 1 }, "chat"),
      (e: Error) =>
        e instanceof CascadeConfigError &&
        /^chat: invalid cascade/.test(e.message) &&
        /unknown key "x"/.test(e.message) &&
        /light must be a model name/.test(e.message) &&
        /heavy must be a model name/.test(e.message) &&
        /escalate.reasoningEffort must be a list/.test(e.message) &&
        /escalate.keywords must be a list/.test(e.message) &&
        /minPromptTokens must be a positive integer/.test(e.message) &&
        /minMeanLogprob must be a number <= 0/.test(e.message) &&
        /escalate: unknown key "other"/.test(e.message),
    );
    assert.throws(() => compileCascade(null), /a cascade is/);
  });
});
