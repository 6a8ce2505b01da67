#!/usr/bin/env node
// End-to-end x402 v2 on Solana with the OFFICIAL SDKs, unchanged, against OUR facilitator:
//   seller: express + @x402/express paymentMiddleware + x402ResourceServer with the SDK's
//           HTTPFacilitatorClient pointed at our facilitator, @x402/svm ExactSvmScheme (server)
//           registered for `solana:*` — the concrete network and `extra.feePayer` come from our
//           GET /supported;
//   buyer:  @x402/fetch wrapFetchWithPayment + x402Client + @x402/svm ExactSvmScheme (client) with
//           a @solana/kit key-pair signer and `{ rpcUrl }` = the local chain
//           (tests/solana-chain/server.mjs, which poses as devnet).
// The route is priced in a local SPL mint (an AssetAmount: the mint and an atomic amount, the
// SDK's documented way to price in a token it has no default for).
//
// Cases (all by default, or job.cases):
//   paid            a normal payment: 200, the resource, PAYMENT-RESPONSE = our settle response
//   sellerBlockhash the same on a second route whose server scheme has `{ rpcUrl }`: the seller
//                   embeds `extra.recentBlockhash` / `lastValidBlockHeight` in its requirements and
//                   the buyer's SDK signs with that blockhash instead of fetching its own
//   underpaid       the buyer's SDK builds a TransferChecked for half the price while `accepted`
//                   still echoes the seller's requirements (a wrapped scheme client lowers `amount`
//                   before the SDK builds): 402, PAYMENT-REQUIRED.error = our reason
//   insufficient    a second buyer (job.poorSecretKey) holding less than the price pays with the
//                   unmodified SDK: our simulation fails, 402 with our reason
//   replay          a fresh payment is paid once, then the identical PAYMENT-SIGNATURE header is
//                   sent again with plain fetch: the second answer is 402 with our reason
//   concurrent      one fresh PAYMENT-SIGNATURE header sent twice at once: exactly one 200; the
//                   other is refused at verify (PAYMENT-REQUIRED.error) or at settle
//                   (PAYMENT-RESPONSE with success:false and our errorReason)
//
// stdin (or the file named by argv[2]): one JSON job
//   { "facilitatorUrl": "http://127.0.0.1:8402", "rpcUrl": "http://127.0.0.1:<port>",
//     "network": "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1" (optional, the default),
//     "mint": "<base58>", "payTo": "<base58 owner wallet>", "amount": "2500",
//     "secretKey": [32-byte seed] | "<base58 64-byte keypair>",
//     "poorSecretKey": … (for `insufficient`), "cases": ["paid", …] }
// job.facilitatorUrl may instead come from the environment (X402_FACILITATOR_URL).
// Only loopback HTTP is allowed: nothing may reach a public cluster.
// stdout: one JSON result (see `result` below). On a harness error: {"error": …} on stderr, exit 2.

import fs from "node:fs";
import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import {
  decodePaymentRequiredHeader,
  decodePaymentResponseHeader,
  decodePaymentSignatureHeader,
} from "@x402/core/http";
import { registerExactSvmScheme as registerServerScheme } from "@x402/svm/exact/server";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactSvmScheme } from "@x402/svm/exact/client";
import {
  createKeyPairSignerFromBytes,
  createKeyPairSignerFromPrivateKeyBytes,
  getBase58Encoder,
} from "@solana/kit";
import { jsonSafe, RecordingFacilitatorClient } from "./recording.mjs";

const DEADLINE_MS = 90_000;
const DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";

function fail(message) {
  process.stderr.write(JSON.stringify({ error: message }) + "\n");
  process.exit(2);
}
setTimeout(() => fail(`e2e-svm did not finish within ${DEADLINE_MS} ms`), DEADLINE_MS).unref();

// Only loopback HTTP (our facilitator, the seller, the local chain). Anything else is a test bug.
const realFetch = globalThis.fetch;
const isLoopback = url => {
  try {
    return ["127.0.0.1", "localhost", "[::1]", "::1"].includes(new URL(url).hostname);
  } catch {
    return false;
  }
};
globalThis.fetch = async (input, init) => {
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  if (!isLoopback(url)) throw new Error(`e2e-svm.mjs: refusing non-loopback request to ${url}`);
  return realFetch(input, init);
};

async function readJob() {
  if (process.argv[2]) return JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const versionOf = name =>
  JSON.parse(fs.readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8"))
    .version;

async function signerFromSecret(secret) {
  let bytes;
  if (Array.isArray(secret)) bytes = Uint8Array.from(secret);
  else if (typeof secret === "string") bytes = new Uint8Array(getBase58Encoder().encode(secret));
  else throw new Error("a secret key must be a base58 string or a byte array");
  if (bytes.length === 64) return createKeyPairSignerFromBytes(bytes);
  if (bytes.length === 32) return createKeyPairSignerFromPrivateKeyBytes(bytes);
  throw new Error(`a secret key must be 64 (keypair) or 32 (seed) bytes, got ${bytes.length}`);
}

/** A scheme client that lets the official ExactSvmScheme build for `tamper(requirements)`. */
class TamperedScheme {
  constructor(inner, tamper) {
    this.inner = inner;
    this.tamper = tamper;
    this.scheme = inner.scheme;
    this.findDefaultAsset = inner.findDefaultAsset;
  }
  createPaymentPayload(x402Version, requirements, context) {
    return this.inner.createPaymentPayload(x402Version, this.tamper({ ...requirements }), context);
  }
}

function decodeHeader(response, name, decode) {
  const raw = response.headers.get(name);
  if (!raw) return null;
  try {
    return decode(raw);
  } catch (e) {
    return { undecodable: raw, error: String(e) };
  }
}

function decodeSent(header) {
  try {
    return jsonSafe(decodePaymentSignatureHeader(header));
  } catch (e) {
    return { undecodable: header, error: String(e) };
  }
}

async function describe(response, sent) {
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
    ...(sent ? { sentPaymentSignature: sent, sentPayment: decodeSent(sent) } : {}),
  };
}

async function main() {
  const job = await readJob();
  job.facilitatorUrl ??= process.env.X402_FACILITATOR_URL;
  for (const k of ["facilitatorUrl", "rpcUrl", "mint", "payTo", "amount", "secretKey"]) {
    if (job[k] === undefined) fail(`job.${k} is required`);
  }
  for (const k of ["facilitatorUrl", "rpcUrl"]) {
    if (!isLoopback(job[k])) fail(`job.${k} ${job[k]} is not a loopback URL`);
  }
  const network = job.network ?? DEVNET;
  const cases = job.cases ?? ["paid", "sellerBlockhash", "underpaid", "insufficient", "replay", "concurrent"];
  if (cases.includes("insufficient") && job.poorSecretKey === undefined) {
    fail("job.poorSecretKey is required for the insufficient case");
  }
  const signer = await signerFromSecret(job.secretKey);
  const poorSigner = job.poorSecretKey !== undefined ? await signerFromSecret(job.poorSecretKey) : null;

  // ---- seller ----
  const facilitatorLog = [];
  const facilitator = new RecordingFacilitatorClient(
    { url: job.facilitatorUrl, timeoutMs: 30_000 },
    facilitatorLog,
  );
  // solana:* — the concrete network and the fee payer are learned from /supported.
  const resourceServer = new x402ResourceServer(facilitator);
  registerServerScheme(resourceServer);
  // The same, but the server scheme puts a recent blockhash from the chain into `extra`.
  const blockhashServer = new x402ResourceServer(facilitator);
  registerServerScheme(blockhashServer, { rpcUrl: job.rpcUrl });
  const route = {
    accepts: {
      scheme: "exact",
      network,
      payTo: job.payTo,
      price: { amount: String(job.amount), asset: job.mint },
      maxTimeoutSeconds: 60,
    },
    description: "weather",
    mimeType: "application/json",
  };
  let handlerRuns = 0;
  const app = express();
  app.use(paymentMiddleware({ "GET /weather": route }, resourceServer));
  app.use(paymentMiddleware({ "GET /weather-fresh": route }, blockhashServer));
  const handler = (_req, res) => {
    handlerRuns += 1;
    res.json({ weather: "sunny", temperature: 70 });
  };
  app.get("/weather", handler);
  app.get("/weather-fresh", handler);
  const listener = await new Promise((resolve, reject) => {
    const l = app.listen(0, "127.0.0.1", () => resolve(l));
    l.on("error", reject);
  });
  const origin = `http://127.0.0.1:${listener.address().port}`;
  const url = `${origin}/weather`;

  // ---- buyers ----
  const buyer = ({ tamper, who = signer } = {}) => {
    const client = new x402Client();
    // The local mint is not in @x402/svm's default-asset table; the default spend controls
    // (default assets only, $1 cap) would refuse it before signing.
    client.setSpendControls(false);
    // registerExactSvmScheme() has no rpcUrl option: register the scheme object directly.
    const scheme = new ExactSvmScheme(who, { rpcUrl: job.rpcUrl });
    client.register(network, tamper ? new TamperedScheme(scheme, tamper) : scheme);
    return client;
  };
  // fetch that remembers the PAYMENT-SIGNATURE header it sent
  const recordingFetch = sent => async (input, init) => {
    const request = new Request(input, init);
    const sig = request.headers.get("PAYMENT-SIGNATURE");
    if (sig) sent.push(sig);
    return fetch(request);
  };
  const pay = async (options, target = url) => {
    const sent = [];
    const payingFetch = wrapFetchWithPayment(recordingFetch(sent), buyer(options));
    try {
      const response = await payingFetch(target, { method: "GET" });
      return await describe(response, sent.at(-1));
    } catch (e) {
      return { threw: e instanceof Error ? e.message : String(e), sentPaymentSignature: sent.at(-1) ?? null };
    }
  };

  // Token balance of an owner for the mint (all its token accounts; "0" when it has none).
  const tokenBalance = async owner => {
    const answer = await (
      await fetch(job.rpcUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method: "getTokenAccountsByOwner",
          params: [owner, { mint: job.mint }, { encoding: "jsonParsed" }],
        }),
      })
    ).json();
    if (answer.error) throw new Error(`getTokenAccountsByOwner: ${JSON.stringify(answer.error)}`);
    return answer.result.value
      .reduce((sum, a) => sum + BigInt(a.account.data.parsed.info.tokenAmount.amount), 0n)
      .toString();
  };

  const result = {
    versions: Object.fromEntries(
      ["@x402/core", "@x402/svm", "@x402/express", "@x402/fetch", "@solana/kit", "express"].map(n => [
        n,
        versionOf(n),
      ]),
    ),
    sellerUrl: url,
    network,
    payer: signer.address,
    poorPayer: poorSigner?.address ?? null,
  };

  // Unpaid requests first: the 402s the SDK seller builds from our /supported.
  result.unpaid = await describe(await fetch(url));
  result.unpaidFresh = await describe(await fetch(`${origin}/weather-fresh`));
  result.sellerSupportedKind = jsonSafe(resourceServer.getSupportedKind(2, network, "exact")) ?? null;

  const runCase = async (name, fn) => {
    if (!cases.includes(name)) return;
    const before = await tokenBalance(job.payTo);
    const logStart = facilitatorLog.length;
    const handlerBefore = handlerRuns;
    const outcome = await fn();
    outcome.payToBalanceBefore = before;
    outcome.payToBalanceAfter = await tokenBalance(job.payTo);
    outcome.handlerRuns = handlerRuns - handlerBefore;
    outcome.facilitatorCalls = facilitatorLog.slice(logStart);
    result[name] = outcome;
  };

  await runCase("paid", () => pay());
  await runCase("sellerBlockhash", () => pay({}, `${origin}/weather-fresh`));
  await runCase("underpaid", () =>
    pay({ tamper: r => ({ ...r, amount: (BigInt(r.amount) / 2n).toString() }) }),
  );
  await runCase("insufficient", () => pay({ who: poorSigner }));
  await runCase("replay", async () => {
    const first = await pay();
    let second = null;
    if (first.sentPaymentSignature) {
      second = await describe(
        await fetch(url, { headers: { "PAYMENT-SIGNATURE": first.sentPaymentSignature } }),
      );
    }
    return { first, second };
  });
  await runCase("concurrent", async () => {
    // One payment made by the SDK buyer (the paid retry is intercepted, only its header kept),
    // then that PAYMENT-SIGNATURE sent twice at once.
    const sent = [];
    const probe = async (input, init) => {
      const request = new Request(input, init);
      const sig = request.headers.get("PAYMENT-SIGNATURE");
      if (sig) {
        sent.push(sig);
        return new Response("{}", { status: 599 });
      }
      return fetch(request);
    };
    await wrapFetchWithPayment(probe, buyer())(url, { method: "GET" });
    const send = () => fetch(url, { headers: { "PAYMENT-SIGNATURE": sent[0] } }).then(r => describe(r));
    const answers = await Promise.all([send(), send()]);
    return { answers };
  });

  result.payerBalanceAfter = await tokenBalance(signer.address);
  result.payToBalanceAfter = await tokenBalance(job.payTo);
  listener.closeAllConnections?.();
  listener.close();
  process.stdout.write(JSON.stringify(jsonSafe(result)) + "\n");
  process.exit(0);
}

main().catch(e => fail(e instanceof Error ? e.stack ?? e.message : String(e)));
