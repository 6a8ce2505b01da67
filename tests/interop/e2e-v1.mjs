#!/usr/bin/env node
// End-to-end x402 v1 with the LEGACY official SDKs (npm `x402`, `x402-express`, `x402-fetch`
// 1.x), unchanged, against OUR facilitator:
//   seller: express + x402-express paymentMiddleware(payTo, routes, { url: <our facilitator> });
//           the route's v1 network is taken from our GET /supported (read with x402/verify
//           useFacilitator().supported(): the v1 `exact` kind on an EVM network, e.g.
//           `base-sepolia` when anvil runs with --chain-id 84532);
//   buyer:  x402-fetch wrapFetchWithPayment with a viem wallet client (local account; its
//           transport points at the anvil RPC, though signing never uses it).
// X-PAYMENT request header, X-PAYMENT-RESPONSE answer header, 402 JSON bodies.
// The route is priced in the local test token ({amount, asset: {address, decimals, eip712}}).
//
// Cases (all by default, or job.cases):
//   paid        200, the resource, X-PAYMENT-RESPONSE = our settle response
//   underpaid   the buyer's payment-requirements selector hands the SDK a copy of the seller's
//               requirements with half the price, so the SDK signs for less; the seller forwards
//               its own requirements: 402 body { error: <our reason> }
//   expired     the selector hands the SDK a negative maxTimeoutSeconds (validBefore in the
//               past): 402 with our reason
//   replay      paid once, then the identical X-PAYMENT header again with plain fetch: 402
//   concurrent  one fresh X-PAYMENT header sent twice at once: exactly one 200
//
// stdin (or the file named by argv[2]): one JSON job, as for e2e-v2.mjs:
//   { "facilitatorUrl", "rpcUrl", "chainId": 84532, "token", "tokenName", "tokenVersion",
//     "privateKey", "payTo", "amount", "cases"? }
// job.facilitatorUrl may instead come from the environment (X402_FACILITATOR_URL).
// stdout: one JSON result. On a harness error: {"error": …} on stderr, exit 2.

import fs from "node:fs";
import express from "express";
import { paymentMiddleware } from "x402-express";
import { wrapFetchWithPayment, decodeXPaymentResponse } from "x402-fetch";
import { selectPaymentRequirements } from "x402/client";
import { useFacilitator } from "x402/verify";
import { ChainIdToNetwork, SupportedEVMNetworks } from "x402/types";
import { createPublicClient, createWalletClient, http, publicActions, erc20Abi, defineChain } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const DEADLINE_MS = 90_000;

function fail(message) {
  process.stderr.write(JSON.stringify({ error: message }) + "\n");
  process.exit(2);
}
setTimeout(() => fail(`e2e-v1 did not finish within ${DEADLINE_MS} ms`), DEADLINE_MS).unref();

const jsonSafe = obj =>
  obj === undefined
    ? null
    : JSON.parse(JSON.stringify(obj, (_, v) => (typeof v === "bigint" ? v.toString() : v)));

async function readJob() {
  if (process.argv[2]) return JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const versionOf = name =>
  JSON.parse(fs.readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8"))
    .version;

async function describe(response, sent) {
  const text = await response.text();
  let body = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // keep the text
  }
  const raw = response.headers.get("X-PAYMENT-RESPONSE");
  let paymentResponse = null;
  if (raw) {
    try {
      paymentResponse = decodeXPaymentResponse(raw);
    } catch (e) {
      paymentResponse = { undecodable: raw, error: String(e) };
    }
  }
  return { status: response.status, body, paymentResponse, ...(sent ? { sentXPayment: sent } : {}) };
}

async function main() {
  const job = await readJob();
  job.facilitatorUrl ??= process.env.X402_FACILITATOR_URL;
  for (const k of ["facilitatorUrl", "rpcUrl", "token", "tokenName", "tokenVersion", "privateKey", "payTo", "amount"]) {
    if (job[k] === undefined) fail(`job.${k} is required`);
  }
  const chainId = Number(job.chainId ?? 84532);
  const cases = job.cases ?? ["paid", "underpaid", "expired", "replay", "concurrent"];
  const facilitatorConfig = { url: job.facilitatorUrl };

  // ---- seller: learn the v1 network from our /supported ----
  const supported = await useFacilitator(facilitatorConfig).supported();
  const v1Kind = (supported.kinds ?? []).find(
    k => k.x402Version === 1 && k.scheme === "exact" && SupportedEVMNetworks.includes(k.network),
  );
  if (!v1Kind) fail(`our /supported lists no v1 exact EVM kind: ${JSON.stringify(supported)}`);
  const network = v1Kind.network;
  if (ChainIdToNetwork[chainId] !== network) {
    fail(`v1 network ${network} from /supported is not chain ${chainId} (${ChainIdToNetwork[chainId]})`);
  }

  let handlerRuns = 0;
  const app = express();
  app.use(
    paymentMiddleware(
      job.payTo,
      {
        "GET /weather": {
          price: {
            amount: String(job.amount),
            asset: {
              address: job.token,
              decimals: 6,
              eip712: { name: job.tokenName, version: job.tokenVersion },
            },
          },
          network,
          config: { description: "weather", mimeType: "application/json", maxTimeoutSeconds: 60 },
        },
      },
      facilitatorConfig,
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

  // ---- buyer ----
  const chain = defineChain({
    id: chainId,
    name: network,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [job.rpcUrl] } },
  });
  const account = privateKeyToAccount(job.privateKey);
  const wallet = createWalletClient({ chain, transport: http(job.rpcUrl), account }).extend(publicActions);
  const maxValue = BigInt(job.amount) * 10n;

  const recordingFetch = sent => async (input, init) => {
    const xPayment = init?.headers?.["X-PAYMENT"];
    if (xPayment) sent.push(xPayment);
    const { __is402Retry: _, ...rest } = init ?? {};
    return fetch(input, rest);
  };
  const pay = async tamper => {
    const sent = [];
    const selector = (accepts, net, scheme) => {
      const chosen = selectPaymentRequirements(accepts, net, scheme);
      return tamper ? tamper({ ...chosen }) : chosen;
    };
    const payingFetch = wrapFetchWithPayment(recordingFetch(sent), wallet, maxValue, selector);
    try {
      return await describe(await payingFetch(url, { method: "GET" }), sent.at(-1));
    } catch (e) {
      return { threw: e instanceof Error ? e.message : String(e), sentXPayment: sent.at(-1) ?? null };
    }
  };
  const resend = async xPayment => describe(await fetch(url, { headers: { "X-PAYMENT": xPayment } }));

  const rpc = createPublicClient({ chain, transport: http(job.rpcUrl) });
  const payToBalance = async () =>
    (
      await rpc.readContract({ address: job.token, abi: erc20Abi, functionName: "balanceOf", args: [job.payTo] })
    ).toString();

  const result = {
    versions: Object.fromEntries(
      ["x402", "x402-express", "x402-fetch", "express", "viem"].map(n => [n, versionOf(n)]),
    ),
    sellerUrl: url,
    supported: jsonSafe(supported),
    network,
    payer: account.address,
  };
  result.unpaid = await describe(await fetch(url));

  const runCase = async (name, fn) => {
    if (!cases.includes(name)) return;
    const before = await payToBalance();
    const handlerBefore = handlerRuns;
    const outcome = await fn();
    outcome.payToBalanceBefore = before;
    outcome.payToBalanceAfter = await payToBalance();
    outcome.handlerRuns = handlerRuns - handlerBefore;
    result[name] = outcome;
  };

  await runCase("paid", () => pay());
  await runCase("underpaid", () =>
    pay(r => ({ ...r, maxAmountRequired: (BigInt(r.maxAmountRequired) / 2n).toString() })),
  );
  await runCase("expired", () => pay(r => ({ ...r, maxTimeoutSeconds: -120 })));
  await runCase("replay", async () => {
    const first = await pay();
    const second = first.sentXPayment ? await resend(first.sentXPayment) : null;
    return { first, second };
  });
  await runCase("concurrent", async () => {
    // One payment made by the SDK (its first 402 answer is only used to learn the header).
    const sent = [];
    const probe = async (input, init) => {
      const xPayment = init?.headers?.["X-PAYMENT"];
      if (xPayment) {
        sent.push(xPayment);
        return new Response("{}", { status: 599 });
      }
      return fetch(input, init);
    };
    await wrapFetchWithPayment(probe, wallet, maxValue)(url, { method: "GET" });
    const answers = await Promise.all([resend(sent[0]), resend(sent[0])]);
    return { answers };
  });

  listener.closeAllConnections?.();
  listener.close();
  process.stdout.write(JSON.stringify(jsonSafe(result)) + "\n");
  process.exit(0);
}

main().catch(e => fail(e instanceof Error ? e.stack ?? e.message : String(e)));
