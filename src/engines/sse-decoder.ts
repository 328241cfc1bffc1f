/**
 * Splits a server-sent-event byte stream into `data:` payloads. Bytes arrive
 * cut anywhere, even inside a UTF-8 character, so decoding is streaming and a
 * partial line waits for the next chunk.
 */
export class SseLineDecoder {
  readonly #utf8 = new TextDecoder("utf-8");
  #partial = "";

  push(bytes: Uint8Array, onData: (data: string) => void): void {
    const text = this.#partial + this.#utf8.decode(bytes, { stream: true });
    let start = 0;
    for (let nl = text.indexOf("\n", start); nl !== -1; nl = text.indexOf("\n", start)) {
      const end = nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
      if (text.startsWith("data:", start)) {
        const from = text.charCodeAt(start + 5) === 32 ? start + 6 : start + 5;
        onData(text.slice(from, end));
      }
      start = nl + 1;
    }
    this.#partial = text.slice(start);
  }
}
