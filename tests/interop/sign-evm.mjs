#!/usr/bin/env node
// Produce a really-signed x402 EVM payment with the OFFICIAL client SDK (@x402/core x402Client +
// @x402/evm), for the Rust facilitator's integration tests: `exact` by EIP-3009 (the default) or
// by Permit2 (requirements.extra.assetTransferMethod "permit2"; the SDK routes on it), and `upto`
// (requirements.scheme "upto", UptoEvmScheme: Permit2 with the facilitator named in
// requirements.extra.facilitatorAddress).
//
// stdin : one JSON job
//   {
//     "privateKey":  "0x<32-byte hex>",               // payer key (viem privateKeyToAccount)
//     "chainId":     31337,                            // optional consistency check
//     "x402Version": 2,                                // 2 (default) or 1
//     "requirements": { PaymentRequirements v2 }       // scheme, network "eip155:<id>", amount,
//                                                      // asset, payTo, maxTimeoutSeconds,
//                                                      // extra: {name, version}
//     "resource":    { "url": "...", "description"?: "...", "mimeType"?: "..." },
//     "extensions":  { ... }                           // optional PaymentRequired.extensions
//     "nowUnix":     1700000000                        // optional: clock seen by the SDK while
//                                                      // signing (to make expired payloads)
//     "rpcUrl":      "http://127.0.0.1:8545"           // optional: lets the Permit2 clients read the
//                                                      // chain (allowance, EIP-2612 nonces) for the
//                                                      // eip2612GasSponsoring extension, which they
//                                                      // sign when `extensions` declares it and the
//                                                      // Permit2 allowance is short
//   }
//   For x402Version 1, `requirements` may be a v1 PaymentRequirements object (has
//   `maxAmountRequired`, v1 network name) or the v2 shape above, which is converted
//   (amount -> maxAmountRequired, resource.url -> resource, eip155:<id> -> v1 name).
//   v1 only knows the legacy names in @x402/evm's EVM_NETWORK_CHAIN_ID_MAP; chain 31337
//   has none, so use e.g. anvil --chain-id 84532 with "base-sepolia" for v1 tests.
//
// stdout: the POST /verify (and /settle) body, exactly as @x402/core's HTTPFacilitatorClient
//   builds it: {"x402Version": <paymentPayload.x402Version>, "paymentPayload": {...},
//   "paymentRequirements": {...}}.  `--pretty` indents it.
// On error: {"error": "..."} on stderr, exit code 2.
//
// No network access but to job.rpcUrl (a loopback anvil): signing needs only address +
// signTypedData from a viem LocalAccount; globalThis.fetch/WebSocket are replaced with stubs that
// throw for anything else.

import { x402Client } from "@x402/core/client";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { UptoEvmScheme } from "@x402/evm/upto/client";
import { EVM_NETWORK_CHAIN_ID_MAP } from "@x402/evm/v1";
import { privateKeyToAccount } from "viem/accounts";

const blockNetwork = () => {
  throw new Error("sign-evm.mjs: network access is disabled (signing must be offline)");
};
const realFetch = globalThis.fetch;
let allowedOrigin = null; // job.rpcUrl's origin, once read
globalThis.fetch = async (input, init) => {
  const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
  const loopback = url.hostname === "127.0.0.1" || url.hostname === "localhost";
  if (allowedOrigin && loopback && url.origin === allowedOrigin) return realFetch(input, init);
  return blockNetwork();
};
globalThis.WebSocket = class {
  constructor() {
    blockNetwork();
  }
};

const jsonSafe = obj =>
  JSON.parse(JSON.stringify(obj, (_, v) => (typeof v === "bigint" ? v.toString() : v)));

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

function fail(message) {
  process.stderr.write(JSON.stringify({ error: message }) + "\n");
  process.exit(2);
}

function v1NameForChainId(chainId) {
  const hit = Object.entries(EVM_NETWORK_CHAIN_ID_MAP).find(([, id]) => id === chainId);
  return hit ? hit[0] : undefined;
}

function toV1Requirements(job) {
  const r = job.requirements;
  if (r.maxAmountRequired !== undefined) return r; // already v1
  let network = r.network;
  const m = /^eip155:(\d+)$/.exec(network ?? "");
  if (m) {
    const name = v1NameForChainId(Number(m[1]));
    if (!name) {
      fail(
        `x402 v1 has no legacy network name for chain ${m[1]}; @x402/evm 2.27.0 v1 client ` +
          `only signs for ${Object.keys(EVM_NETWORK_CHAIN_ID_MAP).join(", ")}`,
      );
    }
    network = name;
  }
  const out = {
    scheme: r.scheme,
    network,
    maxAmountRequired: r.amount,
    resource: job.resource?.url ?? "",
    description: job.resource?.description ?? "",
    mimeType: job.resource?.mimeType ?? "application/json",
    payTo: r.payTo,
    maxTimeoutSeconds: r.maxTimeoutSeconds,
    asset: r.asset,
  };
  if (r.extra !== undefined) out.extra = r.extra;
  return out;
}

async function main() {
  const pretty = process.argv.includes("--pretty");
  let job;
  try {
    job = JSON.parse(await readStdin());
  } catch (e) {
    fail(`stdin is not valid JSON: ${e.message}`);
  }
  if (!job?.privateKey) fail("job.privateKey is required");
  if (!job?.requirements) fail("job.requirements is required");
  const x402Version = job.x402Version ?? 2;
  if (x402Version !== 1 && x402Version !== 2) fail(`unsupported x402Version ${x402Version}`);

  const account = privateKeyToAccount(job.privateKey);
  if (job.rpcUrl) allowedOrigin = new URL(job.rpcUrl).origin;
  const schemeOptions = job.rpcUrl ? { rpcUrl: job.rpcUrl } : undefined;

  const client = new x402Client();
  // Test assets are not in @x402/evm's default-asset table; the default spend controls
  // (default assets only, $1 cap) would reject them before signing.
  client.setSpendControls(false);

  let paymentRequired;
  let requirements;
  if (x402Version === 2) {
    requirements = job.requirements;
    if (job.chainId !== undefined && requirements.network !== `eip155:${job.chainId}`) {
      fail(`requirements.network ${requirements.network} != eip155:${job.chainId}`);
    }
    if (requirements.scheme === "upto") {
      client.register(requirements.network, new UptoEvmScheme(account, schemeOptions));
    } else {
      // Registers ExactEvmScheme for the given CAIP-2 network (v1 names for it: none on 31337).
      registerExactEvmScheme(client, { signer: account, networks: [requirements.network], schemeOptions });
    }
    paymentRequired = {
      x402Version: 2,
      error: "PAYMENT-SIGNATURE header is required",
      resource: job.resource ?? { url: "http://localhost/resource" },
      accepts: [requirements],
      ...(job.extensions !== undefined ? { extensions: job.extensions } : {}),
    };
  } else {
    requirements = toV1Requirements(job);
    const v1ChainId = EVM_NETWORK_CHAIN_ID_MAP[requirements.network];
    if (job.chainId !== undefined && v1ChainId !== undefined && v1ChainId !== job.chainId) {
      fail(`v1 network ${requirements.network} is chain ${v1ChainId}, job.chainId is ${job.chainId}`);
    }
    // Without `networks`, registerExactEvmScheme registers eip155:* for v2 and
    // ExactEvmSchemeV1 for every legacy v1 name.
    registerExactEvmScheme(client, { signer: account });
    paymentRequired = {
      x402Version: 1,
      error: "X-PAYMENT header is required",
      accepts: [requirements],
    };
  }

  const realNow = Date.now;
  if (job.nowUnix !== undefined) Date.now = () => Number(job.nowUnix) * 1000;
  let paymentPayload;
  try {
    paymentPayload = await client.createPaymentPayload(paymentRequired);
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e));
  } finally {
    Date.now = realNow;
  }

  // Same body shape as @x402/core HTTPFacilitatorClient.verify/settle.
  const body = jsonSafe({
    x402Version: paymentPayload.x402Version,
    paymentPayload,
    paymentRequirements: requirements,
  });
  process.stdout.write(JSON.stringify(body, null, pretty ? 2 : 0) + "\n");
}

main().catch(e => fail(e instanceof Error ? e.stack ?? e.message : String(e)));
