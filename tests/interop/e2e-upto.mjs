#!/usr/bin/env node
// End-to-end `upto` (and `exact` via Permit2) with the OFFICIAL SDKs, unchanged, against OUR
// facilitator:
//   seller: express + @x402/express paymentMiddleware + x402ResourceServer with the SDK's
//           HTTPFacilitatorClient pointed at our facilitator, @x402/evm UptoEvmScheme and
//           ExactEvmScheme (server) for `eip155:*`. The upto route charges what it used after
//           answering, with the SDK's settlement override (`setSettlementOverrides(res, {amount})`);
//   buyers: @x402/fetch wrapFetchWithPayment + x402Client + @x402/evm UptoEvmScheme and
//           ExactEvmScheme (client) with viem local accounts. The first buyer approves Permit2 once
//           (`createPermit2ApprovalTx`); the second never does and pays through the
//           eip2612GasSponsoring extension the sponsored route declares.
// Routes are priced in the local Permit2-only token (an AssetAmount with its EIP-712 domain and
// `assetTransferMethod: "permit2"` in `extra`).
//
// Cases (all by default, or job.cases):
//   upto        GET /generate?use=<charge>: the handler charges job.charge of the 2000 maximum
//   upto-zero   GET /generate?use=0: charges nothing
//   sponsored   GET /generate-sponsored?use=<charge> by the buyer without an allowance
//   exact       GET /fixed: exact via Permit2, 2500
//
// stdin: one JSON job
//   { "facilitatorUrl", "rpcUrl", "chainId", "token", "tokenName", "tokenVersion",
//     "privateKey" (approving buyer), "sponsoredKey" (buyer without allowance), "payTo",
//     "charge": "1234", "cases": [...] }
// stdout: one JSON result. On a harness error: {"error": …} on stderr, exit 2.

import express from "express";
import { paymentMiddleware, x402ResourceServer, setSettlementOverrides } from "@x402/express";
import { HTTPFacilitatorClient, decodePaymentRequiredHeader, decodePaymentResponseHeader } from "@x402/core/http";
import { UptoEvmScheme as UptoServer } from "@x402/evm/upto/server";
import { ExactEvmScheme as ExactServer } from "@x402/evm/exact/server";
import { UptoEvmScheme, createPermit2ApprovalTx } from "@x402/evm/upto/client";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { declareEip2612GasSponsoringExtension } from "@x402/extensions";
import { createPublicClient, createWalletClient, defineChain, http, erc20Abi } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { jsonSafe } from "./recording.mjs";

const DEADLINE_MS = 90_000;

function fail(message) {
  process.stderr.write(JSON.stringify({ error: message }) + "\n");
  process.exit(2);
}
setTimeout(() => fail(`e2e-upto did not finish within ${DEADLINE_MS} ms`), DEADLINE_MS).unref();

async function readJob() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
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
    settlementOverridesLeaked: response.headers.get("Settlement-Overrides"),
  };
}

async function main() {
  const job = await readJob();
  for (const k of ["facilitatorUrl", "rpcUrl", "token", "tokenName", "tokenVersion", "privateKey", "sponsoredKey", "payTo"]) {
    if (job[k] === undefined) fail(`job.${k} is required`);
  }
  const chainId = Number(job.chainId ?? 31337);
  const network = `eip155:${chainId}`;
  const cases = job.cases ?? ["upto", "upto-zero", "sponsored", "exact"];
  const charge = String(job.charge ?? "1234");

  // ---- seller ----
  const calls = [];
  class Recording extends HTTPFacilitatorClient {
    async settle(payload, requirements) {
      const answer = await super.settle(payload, requirements);
      calls.push({ op: "settle", amount: requirements.amount, answer: jsonSafe(answer) });
      return answer;
    }
    async verify(payload, requirements) {
      const answer = await super.verify(payload, requirements);
      calls.push({ op: "verify", amount: requirements.amount, answer: jsonSafe(answer) });
      return answer;
    }
  }
  const server = new x402ResourceServer(new Recording({ url: job.facilitatorUrl, timeoutMs: 30_000 }))
    .register("eip155:*", new UptoServer())
    .register("eip155:*", new ExactServer());
  const price = amount => ({
    amount,
    asset: job.token,
    extra: { name: job.tokenName, version: job.tokenVersion, assetTransferMethod: "permit2" },
  });
  const upto = { scheme: "upto", network, payTo: job.payTo, price: price("2000"), maxTimeoutSeconds: 60 };
  const app = express();
  app.use(
    paymentMiddleware(
      {
        "GET /generate": { accepts: upto, description: "metered", mimeType: "application/json" },
        "GET /generate-sponsored": {
          accepts: upto,
          description: "metered, gas-sponsored approval",
          mimeType: "application/json",
          extensions: { ...declareEip2612GasSponsoringExtension() },
        },
        "GET /fixed": {
          accepts: { scheme: "exact", network, payTo: job.payTo, price: price("2500"), maxTimeoutSeconds: 60 },
          description: "fixed",
          mimeType: "application/json",
        },
      },
      server,
    ),
  );
  const metered = (req, res) => {
    // The amount is known only after the work: charge it with the SDK's settlement override.
    setSettlementOverrides(res, { amount: String(req.query.use ?? charge) });
    res.json({ tokens: 42 });
  };
  app.get("/generate", metered);
  app.get("/generate-sponsored", metered);
  app.get("/fixed", (_req, res) => res.json({ ok: true }));
  const listener = await new Promise((resolve, reject) => {
    const l = app.listen(0, "127.0.0.1", () => resolve(l));
    l.on("error", reject);
  });
  const base = `http://127.0.0.1:${listener.address().port}`;

  // ---- buyers ----
  const chain = defineChain({
    id: chainId,
    name: "anvil",
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [job.rpcUrl] } },
  });
  const rpc = createPublicClient({ chain, transport: http(job.rpcUrl) });
  const buyer = key => {
    const account = privateKeyToAccount(key);
    const client = new x402Client();
    // The local token is not a default asset: the default spend controls would refuse it.
    client.setSpendControls(false);
    client.register(network, new UptoEvmScheme(account, { rpcUrl: job.rpcUrl }));
    client.register(network, new ExactEvmScheme(account, { rpcUrl: job.rpcUrl }));
    return { account, fetch: wrapFetchWithPayment(fetch, client) };
  };
  const approving = buyer(job.privateKey);
  const sponsored = buyer(job.sponsoredKey);
  const wallet = createWalletClient({ account: approving.account, chain, transport: http(job.rpcUrl) });
  const approval = createPermit2ApprovalTx(job.token);
  const hash = await wallet.sendTransaction({ to: approval.to, data: approval.data });
  await rpc.waitForTransactionReceipt({ hash });

  const balance = who =>
    rpc.readContract({ address: job.token, abi: erc20Abi, functionName: "balanceOf", args: [who] }).then(String);
  const result = { network, buyer: approving.account.address, sponsoredBuyer: sponsored.account.address };
  result.unpaid = await describe(await fetch(`${base}/generate`));
  const run = async (name, who, path) => {
    if (!cases.includes(name)) return;
    const before = await balance(job.payTo);
    const start = calls.length;
    let outcome;
    try {
      outcome = await describe(await who.fetch(`${base}${path}`, { method: "GET" }));
    } catch (e) {
      outcome = { threw: e instanceof Error ? e.message : String(e) };
    }
    outcome.payToBefore = before;
    outcome.payToAfter = await balance(job.payTo);
    outcome.facilitatorCalls = calls.slice(start);
    result[name] = outcome;
  };
  await run("upto", approving, `/generate?use=${charge}`);
  await run("upto-zero", approving, "/generate?use=0");
  await run("sponsored", sponsored, `/generate-sponsored?use=${charge}`);
  await run("exact", approving, "/fixed");

  listener.closeAllConnections?.();
  listener.close();
  process.stdout.write(JSON.stringify(jsonSafe(result)) + "\n");
  process.exit(0);
}

main().catch(e => fail(e instanceof Error ? e.stack ?? e.message : String(e)));
