#!/usr/bin/env node
// Sessions end to end (#18) with the OFFICIAL SDKs, unchanged, against OUR facilitator:
//   seller: express + @x402/express paymentMiddleware + x402ResourceServer (HTTPFacilitatorClient
//           pointed at us, @x402/evm's server scheme), its route declaring `sign-in-with-x`
//           (declareSIWxExtension of @x402/extensions); the official SIWX server extension's
//           challenge goes in every 402, and a buyer's SIGN-IN-WITH-X proof is checked by OUR
//           POST /sessions/verify in its combined form (`resource`, `within`): a valid proof from
//           a wallet with a settled payment for this resource gets in, with no second payment.
//           That block is the README's "seller's side" (tests/it/sessions.rs holds them equal).
//   buyers: @x402/fetch wrapFetchWithPayment + @x402/evm client (pays), and
//           wrapFetchWithSIWx of @x402/extensions/sign-in-with-x (signs in), viem local accounts.
//
// Cases, in this order:
//   unpaid        no header: 402 with the route's price and a fresh SIWX challenge
//   earlySignIn   the buyer signs in before paying: a valid proof, not entitled: 402
//   paid          the buyer pays once (verify + settle through us): 200
//   signIn        the buyer signs in: 200, no verify and no settle
//   replay        that SIGN-IN-WITH-X header sent again: refused by us (nonce spent): 402
//   again         the buyer signs in with a fresh proof: 200 again
//   stranger      another wallet signs in (valid proof, never paid): 402
//
// stdin: one JSON job
//   { "facilitatorUrl": "http://127.0.0.1:<port>", "chainId": 31337, "token": "0x…",
//     "tokenName": "USD Coin", "tokenVersion": "2", "privateKey": "0x…",
//     "strangerKey": "0x…", "payTo": "0x…", "amount": "2500" }
// stdout: one JSON result (see `result` below). On a harness error: {"error": …} on stderr, exit 2.
// Only loopback HTTP is allowed.

import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import {
  decodePaymentRequiredHeader,
  decodePaymentResponseHeader,
} from "@x402/core/http";
import { registerExactEvmScheme as registerServerScheme } from "@x402/evm/exact/server";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { registerExactEvmScheme as registerClientScheme } from "@x402/evm/exact/client";
import {
  InMemorySIWxStorage,
  createSIWxResourceServerExtension,
  declareSIWxExtension,
  wrapFetchWithSIWx,
} from "@x402/extensions/sign-in-with-x";
import { privateKeyToAccount } from "viem/accounts";
import { jsonSafe, RecordingFacilitatorClient } from "./recording.mjs";

const DEADLINE_MS = 90_000;

function fail(message) {
  process.stderr.write(JSON.stringify({ error: message }) + "\n");
  process.exit(2);
}
setTimeout(() => fail(`e2e-siwx did not finish within ${DEADLINE_MS} ms`), DEADLINE_MS).unref();

// Only loopback HTTP; every POST /sessions/verify and its verdict is recorded for the test.
const realFetch = globalThis.fetch;
const verdicts = [];
globalThis.fetch = async (input, init) => {
  const request = new Request(input, init);
  const url = new URL(request.url);
  if (!["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) {
    throw new Error(`e2e-siwx.mjs: refusing non-loopback request to ${url}`);
  }
  if (url.pathname !== "/sessions/verify") return realFetch(request);
  const asked = await request.clone().json();
  const response = await realFetch(request);
  verdicts.push({ asked, status: response.status, verdict: await response.clone().json() });
  return response;
};

function decodeHeader(response, name, decode) {
  const raw = response.headers.get(name);
  if (!raw) return null;
  try {
    return jsonSafe(decode(raw));
  } catch (e) {
    return { undecodable: raw, error: String(e) };
  }
}

async function describe(response) {
  const text = await response.text();
  let body = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // keep the text
  }
  return {
    status: response.status,
    body,
    paymentResponse: decodeHeader(response, "PAYMENT-RESPONSE", decodePaymentResponseHeader),
    paymentRequired: decodeHeader(response, "PAYMENT-REQUIRED", decodePaymentRequiredHeader),
  };
}

async function main() {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const job = JSON.parse(input);
  for (const k of ["facilitatorUrl", "chainId", "token", "privateKey", "strangerKey", "payTo", "amount"]) {
    if (job[k] === undefined) fail(`job.${k} is required`);
  }
  const { facilitatorUrl } = job;
  const network = `eip155:${job.chainId}`;
  const buyer = privateKeyToAccount(job.privateKey);
  const stranger = privateKeyToAccount(job.strangerKey);

  // ---- seller ----
  const facilitatorLog = [];
  const resourceServer = new x402ResourceServer(
    new RecordingFacilitatorClient({ url: facilitatorUrl, timeoutMs: 30_000 }, facilitatorLog),
  );
  registerServerScheme(resourceServer);
  const accepts = {
    scheme: "exact",
    network,
    payTo: job.payTo,
    price: {
      amount: String(job.amount),
      asset: job.token,
      extra: { name: job.tokenName ?? "USD Coin", version: job.tokenVersion ?? "2" },
    },
    maxTimeoutSeconds: 60,
  };
  const app = express();
  // The origin the buyer sees is known once the seller listens (port 0).
  const listener = await new Promise((resolve, reject) => {
    const l = app.listen(0, "127.0.0.1", () => resolve(l));
    l.on("error", reject);
  });
  const origin = `http://127.0.0.1:${listener.address().port}`;
  let handlerRuns = 0;

  // README "Sessions", the seller's side {
  // The official extension, for its challenge only (its storage stays empty: we check proofs).
  const siwx = createSIWxResourceServerExtension({ origin, storage: new InMemorySIWxStorage() });
  resourceServer.registerExtension({
    key: siwx.key, // "sign-in-with-x": the official challenge (fresh nonce, issuedAt) in every 402
    dynamicInfoFields: siwx.dynamicInfoFields,
    enrichPaymentRequiredResponse: siwx.enrichPaymentRequiredResponse,
    // …and the proof is the facilitator's to check: signature, nonce, and a settled payment.
    transportHooks: { http: { onProtectedRequest: async (declaration, { adapter, path }) => {
      const header = adapter.getHeader("SIGN-IN-WITH-X");
      if (!header) return; // no proof: the buyer pays as usual
      const url = new URL(path, origin).href;
      const chains = declaration.supportedChains.map(c => c.chainId);
      const verdict = await fetch(`${facilitatorUrl}/sessions/verify`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ header, domain: new URL(origin).host, uri: url, chains, resource: url, within: 86400 }),
      }).then(r => r.json());
      if (verdict.valid && verdict.entitled) return { grantAccess: true }; // paid before: no settle
    } } }, // otherwise the usual 402 (the verdict's reason says why)
  });
  const route = { accepts, extensions: declareSIWxExtension({ network, statement: "Sign in to use your pass" }) };
  app.use(paymentMiddleware({ "GET /weather": route }, resourceServer));
  // }

  app.get("/weather", (_req, res) => {
    handlerRuns += 1;
    res.json({ weather: "sunny", temperature: 70 });
  });
  const url = `${origin}/weather`;

  // ---- buyers ----
  // fetch that remembers the SIGN-IN-WITH-X header it sent
  const sentProofs = [];
  const recordingFetch = async (input, init) => {
    const request = new Request(input, init);
    const proof = request.headers.get("SIGN-IN-WITH-X");
    if (proof) sentProofs.push(proof);
    return fetch(request);
  };
  const payingClient = new x402Client();
  // The local test token is not in @x402/evm's default-asset table.
  payingClient.setSpendControls(false);
  registerClientScheme(payingClient, { signer: buyer, networks: [network] });
  const pay = () => wrapFetchWithPayment(fetch, payingClient)(url);
  const signIn = async who => {
    const before = sentProofs.length;
    const response = await wrapFetchWithSIWx(recordingFetch, who)(url);
    return { ...(await describe(response)), sentProof: sentProofs.slice(before).at(-1) ?? null };
  };

  const result = { sellerUrl: url, network, payer: buyer.address, stranger: stranger.address };
  const runCase = async (name, fn) => {
    const logStart = facilitatorLog.length;
    const verdictStart = verdicts.length;
    const handlerBefore = handlerRuns;
    const outcome = await fn();
    outcome.handlerRuns = handlerRuns - handlerBefore;
    outcome.facilitatorCalls = facilitatorLog.slice(logStart);
    outcome.verdicts = verdicts.slice(verdictStart);
    result[name] = outcome;
    return outcome;
  };

  await runCase("unpaid", async () => describe(await fetch(url)));
  await runCase("earlySignIn", () => signIn(buyer));
  await runCase("paid", async () => describe(await pay()));
  const first = await runCase("signIn", () => signIn(buyer));
  await runCase("replay", async () =>
    first.sentProof
      ? describe(await fetch(url, { headers: { "SIGN-IN-WITH-X": first.sentProof } }))
      : { skipped: "no proof was sent" },
  );
  await runCase("again", () => signIn(buyer));
  await runCase("stranger", () => signIn(stranger));

  listener.closeAllConnections?.();
  listener.close();
  process.stdout.write(JSON.stringify(jsonSafe(result)) + "\n");
  process.exit(0);
}

main().catch(e => fail(e instanceof Error ? e.stack ?? e.message : String(e)));
