#!/usr/bin/env node
// End-to-end x402 v2 with the OFFICIAL SDKs, unchanged, against OUR facilitator:
//   seller: express + @x402/express paymentMiddleware + x402ResourceServer with the SDK's
//           HTTPFacilitatorClient pointed at our facilitator, @x402/evm ExactEvmScheme (server)
//           registered for `eip155:*` — the concrete network comes from our GET /supported;
//   buyer:  @x402/fetch wrapFetchWithPayment + x402Client + @x402/evm ExactEvmScheme (client)
//           with a viem local account.
// The route is priced in the local test token (an AssetAmount with the token's EIP-712 domain in
// `extra`, the SDK's documented way to price in a token it has no default for).
//
// Cases (all by default, or job.cases):
//   paid       a normal payment: 200, the resource, PAYMENT-RESPONSE = our settle response
//   underpaid  the buyer's SDK signs an authorization for less than the price while `accepted`
//              still echoes the seller's requirements (a wrapped scheme client lowers `amount`
//              before the SDK signs): the seller answers 402, PAYMENT-REQUIRED.error = our reason
//   expired    the SDK signs with validBefore in the past (the wrapped scheme client hands it a
//              negative maxTimeoutSeconds): 402 with our reason
//   replay     a fresh payment is paid once, then the identical PAYMENT-SIGNATURE header is sent
//              again with plain fetch: the second answer is 402 with our reason
//   concurrent one fresh PAYMENT-SIGNATURE header sent twice at once: exactly one 200; the other
//              is refused at verify (PAYMENT-REQUIRED.error) or at settle (PAYMENT-RESPONSE with
//              success:false and our errorReason)
//
// stdin (or the file named by argv[2]): one JSON job
//   { "facilitatorUrl": "http://127.0.0.1:8402", "rpcUrl": "http://127.0.0.1:8545",
//     "chainId": 31337, "network": "eip155:31337" (optional, default eip155:<chainId>),
//     "token": "0x…", "tokenName": "USD Coin", "tokenVersion": "2",
//     "privateKey": "0x…", "payTo": "0x…", "amount": "2500", "cases": ["paid", …] }
// job.facilitatorUrl may instead come from the environment (X402_FACILITATOR_URL).
// stdout: one JSON result (see `result` below). On a harness error: {"error": …} on stderr, exit 2.

import fs from "node:fs";
import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { decodePaymentRequiredHeader, decodePaymentResponseHeader } from "@x402/core/http";
import { registerExactEvmScheme as registerServerScheme } from "@x402/evm/exact/server";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactEvmScheme, registerExactEvmScheme as registerClientScheme } from "@x402/evm/exact/client";
import { createPublicClient, http, erc20Abi } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { jsonSafe, RecordingFacilitatorClient } from "./recording.mjs";

const DEADLINE_MS = 90_000;

function fail(message) {
  process.stderr.write(JSON.stringify({ error: message }) + "\n");
  process.exit(2);
}
setTimeout(() => fail(`e2e-v2 did not finish within ${DEADLINE_MS} ms`), DEADLINE_MS).unref();

async function readJob() {
  if (process.argv[2]) return JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const versionOf = name =>
  JSON.parse(fs.readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8"))
    .version;

/** A scheme client that lets the official ExactEvmScheme sign for `tamper(requirements)`. */
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
    ...(sent ? { sentPaymentSignature: sent } : {}),
  };
}

async function main() {
  const job = await readJob();
  job.facilitatorUrl ??= process.env.X402_FACILITATOR_URL;
  for (const k of ["facilitatorUrl", "token", "tokenName", "tokenVersion", "privateKey", "payTo", "amount"]) {
    if (job[k] === undefined) fail(`job.${k} is required`);
  }
  const chainId = Number(job.chainId ?? 31337);
  const network = job.network ?? `eip155:${chainId}`;
  const cases = job.cases ?? ["paid", "underpaid", "expired", "replay", "concurrent"];
  const account = privateKeyToAccount(job.privateKey);

  // ---- seller ----
  const facilitatorLog = [];
  const facilitator = new RecordingFacilitatorClient(
    { url: job.facilitatorUrl, timeoutMs: 30_000 },
    facilitatorLog,
  );
  const resourceServer = new x402ResourceServer(facilitator);
  registerServerScheme(resourceServer); // eip155:* — the concrete network is learned from /supported
  let handlerRuns = 0;
  const app = express();
  app.use(
    paymentMiddleware(
      {
        "GET /weather": {
          accepts: {
            scheme: "exact",
            network,
            payTo: job.payTo,
            price: {
              amount: String(job.amount),
              asset: job.token,
              extra: { name: job.tokenName, version: job.tokenVersion },
            },
            maxTimeoutSeconds: 60,
          },
          description: "weather",
          mimeType: "application/json",
        },
      },
      resourceServer,
    ),
  );
  app.get("/weather", (_req, res) => {
    handlerRuns += 1;
    res.json({ weather: "sunny", temperature: 70 });
  });
  const listener = await new Promise((resolve, reject) => {
    const l = app.listen(0, "127.0.0.1", () => resolve(l));
    l.on("error", reject);
  });
  const url = `http://127.0.0.1:${listener.address().port}/weather`;

  // ---- buyers ----
  const buyer = tamper => {
    const client = new x402Client();
    // The local test token is not in @x402/evm's default-asset table; the default spend controls
    // (default assets only, $1 cap) would refuse it before signing.
    client.setSpendControls(false);
    if (tamper) client.register(network, new TamperedScheme(new ExactEvmScheme(account), tamper));
    else registerClientScheme(client, { signer: account, networks: [network] });
    return client;
  };
  // fetch that remembers the PAYMENT-SIGNATURE header it sent
  const recordingFetch = sent => async (input, init) => {
    const request = new Request(input, init);
    const sig = request.headers.get("PAYMENT-SIGNATURE");
    if (sig) sent.push(sig);
    return fetch(request);
  };
  const pay = async tamper => {
    const sent = [];
    const payingFetch = wrapFetchWithPayment(recordingFetch(sent), buyer(tamper));
    try {
      const response = await payingFetch(url, { method: "GET" });
      return await describe(response, sent.at(-1));
    } catch (e) {
      return { threw: e instanceof Error ? e.message : String(e), sentPaymentSignature: sent.at(-1) ?? null };
    }
  };

  const rpc = job.rpcUrl ? createPublicClient({ transport: http(job.rpcUrl) }) : null;
  const payToBalance = async () =>
    rpc
      ? (
          await rpc.readContract({ address: job.token, abi: erc20Abi, functionName: "balanceOf", args: [job.payTo] })
        ).toString()
      : null;

  const result = {
    versions: Object.fromEntries(
      ["@x402/core", "@x402/evm", "@x402/express", "@x402/fetch", "express", "viem"].map(n => [n, versionOf(n)]),
    ),
    sellerUrl: url,
    network,
    payer: account.address,
  };

  // An unpaid request first: the 402 the SDK seller builds from our /supported.
  result.unpaid = await describe(await fetch(url));
  result.sellerSupportedKind = jsonSafe(resourceServer.getSupportedKind(2, network, "exact")) ?? null;

  const runCase = async (name, fn) => {
    if (!cases.includes(name)) return;
    const before = await payToBalance();
    const logStart = facilitatorLog.length;
    const handlerBefore = handlerRuns;
    const outcome = await fn();
    outcome.payToBalanceBefore = before;
    outcome.payToBalanceAfter = await payToBalance();
    outcome.handlerRuns = handlerRuns - handlerBefore;
    outcome.facilitatorCalls = facilitatorLog.slice(logStart);
    result[name] = outcome;
  };

  await runCase("paid", () => pay());
  await runCase("underpaid", () =>
    pay(r => ({ ...r, amount: (BigInt(r.amount) / 2n).toString() })),
  );
  await runCase("expired", () => pay(r => ({ ...r, maxTimeoutSeconds: -120 })));
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

  listener.closeAllConnections?.();
  listener.close();
  process.stdout.write(JSON.stringify(jsonSafe(result)) + "\n");
  process.exit(0);
}

main().catch(e => fail(e instanceof Error ? e.stack ?? e.message : String(e)));
