#!/usr/bin/env node
// A seller's view of a facilitator that needs an API key: the OFFICIAL @x402/core
// HTTPFacilitatorClient with a `createAuthHeaders` callback (keyed verify/settle/supported, as
// its FacilitatorConfig requires) calls our /supported, /verify and /settle with a payment the
// official @x402/core x402Client + @x402/evm exact scheme signed (as in sign-evm.mjs).
//
// stdin : {
//   "facilitatorUrl": "http://127.0.0.1:PORT",
//   "privateKey":     "0x<payer key>",
//   "requirements":   { PaymentRequirements v2 },   // network eip155:<id>, extra {name, version}
//   "resource":       { "url": "..." },
//   "apiKey":         "x402_..." | null              // null: no createAuthHeaders at all
// }
// stdout: { "supported": Step, "verify": Step, "settle": Step }, where Step is
//   { "ok": true, "answer": <the client's parsed answer> } or
//   { "ok": false, "status": <HTTP status when the client reports one>, "message": "..." }.
// Every step runs even when an earlier one fails, so that one run shows the whole picture.
// The key is never printed.

import { x402Client } from "@x402/core/client";
import { HTTPFacilitatorClient } from "@x402/core/http";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";

const jsonSafe = obj =>
  JSON.parse(JSON.stringify(obj, (_, v) => (typeof v === "bigint" ? v.toString() : v)));

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

/// The client throws either a typed error with `statusCode` (a verify/settle-shaped body) or a
/// plain Error whose message names the status ("Facilitator verify failed (401): ...").
function failure(e, key) {
  const text = e instanceof Error ? e.message : String(e);
  const message = key ? text.split(key).join("<key>") : text;
  const status = e?.statusCode ?? Number(/\((\d{3})\)/.exec(text)?.[1] ?? NaN);
  return { ok: false, status: Number.isFinite(status) ? status : null, message };
}

async function step(run, key) {
  try {
    return { ok: true, answer: jsonSafe(await run()) };
  } catch (e) {
    return failure(e, key);
  }
}

async function main() {
  const job = JSON.parse(await readStdin());
  const account = privateKeyToAccount(job.privateKey);
  const signer = new x402Client();
  // Test assets are not in @x402/evm's default-asset table (see sign-evm.mjs).
  signer.setSpendControls(false);
  registerExactEvmScheme(signer, { signer: account, networks: [job.requirements.network] });
  const payload = await signer.createPaymentPayload({
    x402Version: 2,
    error: "PAYMENT-SIGNATURE header is required",
    resource: job.resource,
    accepts: [job.requirements],
  });

  const config = { url: job.facilitatorUrl, timeoutMs: 60_000 };
  if (job.apiKey) {
    const headers = { Authorization: `Bearer ${job.apiKey}` };
    config.createAuthHeaders = async () => ({
      verify: headers,
      settle: headers,
      supported: headers,
    });
  }
  const facilitator = new HTTPFacilitatorClient(config);
  const out = {
    supported: await step(() => facilitator.getSupported(), job.apiKey),
    verify: await step(() => facilitator.verify(payload, job.requirements), job.apiKey),
    settle: await step(() => facilitator.settle(payload, job.requirements), job.apiKey),
  };
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch(e => {
  process.stderr.write(JSON.stringify({ error: e instanceof Error ? e.message : String(e) }) + "\n");
  process.exit(2);
});
