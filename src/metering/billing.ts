/**
 * The billing rule: what a request's ledger row bills, by how it ended.
 * docs/tenancy.md has it as a table; in short, output that never reached
 * the client is never billed, and a request that delivered nothing bills
 * nothing.
 *
 * | ended                         | input billed            | output billed                |
 * |-------------------------------|-------------------------|------------------------------|
 * | ok (stop or length)           | the engine's count      | the engine's count           |
 * | cancelled / deadline / failed, nothing delivered | 0    | 0                            |
 * | cancelled / deadline / failed after output      | the prompt's count | tokens delivered  |
 * | interrupted (gateway crashed) | 0                       | 0                            |
 *
 * The engine's counts arrive already clamped to what is possible for the
 * request (the dispatcher holds output to max_tokens and prompt tokens to the
 * prompt's bound). The prompt's count is the model's tokenizer where one is
 * at hand, else an estimate (~4 characters a token, never above the bound);
 * delivered tokens are the engine's per-chunk counts, estimates where the
 * upstream gave none. A row billed from any estimate is marked as such.
 */
import type { TokenUsage } from "../core/request.js";
import type { Settlement } from "./tenancy.js";

/** A prompt's length for billing: exact from the tokenizer, or an estimate. */
export interface PromptCount {
  readonly tokens: number;
  readonly estimated: boolean;
}

export interface Billed {
  /** Undefined: nothing to bill. */
  readonly usage: TokenUsage | undefined;
  readonly estimated: boolean;
}

export function billable(s: Settlement, prompt: PromptCount): Billed {
  if (s.usage !== undefined) return { usage: s.usage, estimated: s.usageEstimated === true };
  const delivered = s.streamedTokens ?? 0;
  if (delivered <= 0) return { usage: undefined, estimated: false };
  return {
    usage: { promptTokens: prompt.tokens, completionTokens: delivered, cachedTokens: 0 },
    estimated: prompt.estimated || s.streamedEstimated === true,
  };
}
