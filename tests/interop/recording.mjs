// Pieces the end-to-end scripts share: JSON that survives bigints, and the official SDK's
// facilitator client recording what our facilitator answered (for the Rust test's assertions
// and for diagnosis).

import { HTTPFacilitatorClient } from "@x402/core/http";

/** `obj` as plain JSON (bigints as decimal strings; `undefined` as null). */
export const jsonSafe = obj =>
  obj === undefined
    ? null
    : JSON.parse(JSON.stringify(obj, (_, v) => (typeof v === "bigint" ? v.toString() : v)));

/** `HTTPFacilitatorClient`, pushing `{op, answer}` or `{op, threw}` to `log` for every call. */
export class RecordingFacilitatorClient extends HTTPFacilitatorClient {
  constructor(config, log) {
    super(config);
    this.log = log;
  }
  async record(op, call) {
    try {
      const answer = await call();
      this.log.push({ op, answer: jsonSafe(answer) });
      return answer;
    } catch (e) {
      this.log.push({ op, threw: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
      throw e;
    }
  }
  verify(payload, requirements) {
    return this.record("verify", () => super.verify(payload, requirements));
  }
  settle(payload, requirements) {
    return this.record("settle", () => super.settle(payload, requirements));
  }
  getSupported() {
    return this.record("supported", () => super.getSupported());
  }
}
