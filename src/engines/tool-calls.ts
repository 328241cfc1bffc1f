/**
 * Tool calling on an engine that holds its output to a grammar (the local
 * engine). When the model must call a tool (tool_choice "required", or one
 * tool by name), the answer is generated as JSON held to a schema built
 * from the tools' parameters, and read back as the call: it parses, names
 * an offered tool, and its arguments fit that tool's schema, as far as the
 * grammar enforces schemas (engines/json-schema-grammar.ts). A tool whose
 * parameters use a keyword the grammar cannot enforce is refused by path.
 */
import { randomBytes } from "node:crypto";
import type { ChatMessage, Prompt, ResponseFormat, Tool, ToolUse } from "../core/request.js";
import { grammarSchema } from "./json-schema-grammar.js";

/** A call the model must make, as the answer's format; `name` where the tool is known before it answers. */
export interface ForcedCall {
  readonly format: ResponseFormat & { readonly type: "json_schema" };
  readonly name?: string;
}

/** A tool without parameters takes an empty object. */
const NO_PARAMETERS = { type: "object", properties: {} } as const;

/** A tool's parameters as the grammar takes them, or a 400 naming the keyword by its path in the request. */
export function toolParameters(use: ToolUse, tool: Tool): Readonly<Record<string, unknown>> {
  const at = `tools[${use.tools.indexOf(tool)}].function.parameters`;
  return grammarSchema(tool.parameters ?? NO_PARAMETERS, { path: at, param: at });
}

/** The format that makes the answer a call, where the model must call one; undefined for auto and none. */
export function forcedCall(use: ToolUse): ForcedCall | undefined {
  const choice = use.choice;
  if (choice === "none" || choice === "auto") return undefined;
  if (typeof choice === "object") {
    const tool = use.tools.find((t) => t.name === choice.name)!;
    return { format: { type: "json_schema", name: "tool_call", schema: toolParameters(use, tool), strict: true }, name: tool.name };
  }
  const oneOf = use.tools.map((t) => ({
    type: "object",
    properties: { name: { const: t.name }, arguments: toolParameters(use, t) },
    required: ["name", "arguments"],
    additionalProperties: false,
  }));
  return { format: { type: "json_schema", name: "tool_call", schema: { oneOf }, strict: true } };
}

/**
 * The conversation with a system turn that tells the model which call to
 * write and how: the grammar holds it to the shape, but a model that knows
 * the tools fills in better arguments.
 */
export function withCallInstructions(prompt: Prompt & { kind: "chat" }, use: ToolUse, forced: ForcedCall): Prompt & { kind: "chat" } {
  const describe = (t: Tool): string => `- ${t.name}${t.description === undefined ? "" : `: ${t.description}`}. Arguments: ${JSON.stringify(t.parameters ?? NO_PARAMETERS)}`;
  const content =
    forced.name === undefined
      ? `Call one of these tools. Answer with only a JSON object {"name": the tool's name, "arguments": its arguments}.\n${use.tools.map(describe).join("\n")}`
      : `Call the tool ${forced.name}. Answer with only its arguments, as a JSON object.\n${describe(use.tools.find((t) => t.name === forced.name)!)}`;
  const note: ChatMessage = { role: "system", content };
  return { kind: "chat", messages: [note, ...prompt.messages] };
}

/**
 * The call a forced answer wrote. A whole answer always parses (the
 * grammar held it); one cut at max_tokens keeps what was written as the
 * arguments, where the tool's name is known, and is no call otherwise.
 */
export function readCall(forced: ForcedCall, text: string): { name: string; arguments: string } | undefined {
  if (forced.name !== undefined) return { name: forced.name, arguments: text };
  try {
    const value = JSON.parse(text) as { name?: unknown; arguments?: unknown };
    if (typeof value.name === "string") return { name: value.name, arguments: JSON.stringify(value.arguments ?? {}) };
  } catch {
    // cut short: no call to read
  }
  return undefined;
}

/** A call's id, in OpenAI's form. */
export function newCallId(): string {
  return `call_${randomBytes(12).toString("base64url")}`;
}
