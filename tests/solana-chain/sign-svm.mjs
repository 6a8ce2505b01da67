#!/usr/bin/env node
// Produce a really-signed x402 `exact` SVM payment with the OFFICIAL client SDK
// (@x402/core x402Client + @x402/svm ExactSvmScheme), for the Rust facilitator's integration tests.
//
// stdin : one JSON job
//   {
//     "secretKey":   "<base58>" | [bytes...],         // payer: 64-byte keypair (secret||public,
//                                                      // Solana CLI id.json style) or 32-byte seed
//     "rpcUrl":      "http://127.0.0.1:<port>",        // our local chain (server.mjs); loopback only
//     "x402Version": 2,                                // 2 (default) or 1
//     "requirements": { PaymentRequirements v2 }       // scheme "exact", network (CAIP-2, see below),
//                                                      // amount, asset (mint), payTo (owner wallet),
//                                                      // maxTimeoutSeconds, extra: {feePayer, memo?}
//     "resource":    { "url": "...", ... },            // optional (v2 PaymentRequired.resource)
//     "extensions":  { ... }                           // optional PaymentRequired.extensions
//   }
//   Networks: @x402/svm 2.27.0 only accepts the three public clusters —
//   solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1 (devnet), solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp
//   (mainnet), solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z (testnet); v1 names solana-devnet, solana,
//   solana-testnet. Any other id throws "Unsupported SVM network". The cluster only picks the
//   default RPC URL; `rpcUrl` (ExactSvmScheme's `{ rpcUrl }` config) overrides it.
//   For x402Version 1, `requirements` may be a v1 object (has `maxAmountRequired`, v1 network
//   name) or the v2 shape above, which is converted.
//
// The client reads the mint (getAccountInfo, base64) and, unless requirements.extra.recentBlockhash
// is given, getLatestBlockhash from rpcUrl. It signs only its own (authority) slot; the fee-payer
// signature slot (account 0 = extra.feePayer) stays zeroed.
//
// stdout: the POST /verify (and /settle) body, exactly as @x402/core's HTTPFacilitatorClient
//   builds it: {"x402Version": n, "paymentPayload": {...}, "paymentRequirements": {...}}.
//   `--pretty` indents it.
// On error: {"error": "..."} on stderr, exit code 2.

import { x402Client } from "@x402/core/client";
import { ExactSvmScheme } from "@x402/svm/exact/client";
import { ExactSvmSchemeV1 } from "@x402/svm/exact/v1/client";
import { V1_TO_V2_NETWORK_MAP } from "@x402/svm";
import {
  createKeyPairSignerFromBytes,
  createKeyPairSignerFromPrivateKeyBytes,
  getBase58Encoder,
} from "@solana/kit";

// Only loopback HTTP is allowed (the local chain). Anything else is a test bug.
const realFetch = globalThis.fetch;
function isLoopback(url) {
  try {
    const u = new URL(url);
    return ["127.0.0.1", "localhost", "[::1]", "::1"].includes(u.hostname);
  } catch {
    return false;
  }
}
globalThis.fetch = async (input, init) => {
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  if (!isLoopback(url)) throw new Error(`sign-svm.mjs: refusing non-loopback request to ${url}`);
  return realFetch(input, init);
};
globalThis.WebSocket = class {
  constructor() {
    throw new Error("sign-svm.mjs: websockets are disabled");
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

export async function signerFromSecret(secret) {
  let bytes;
  if (Array.isArray(secret)) bytes = Uint8Array.from(secret);
  else if (typeof secret === "string") bytes = new Uint8Array(getBase58Encoder().encode(secret));
  else throw new Error("secretKey must be a base58 string or a byte array");
  if (bytes.length === 64) return createKeyPairSignerFromBytes(bytes);
  if (bytes.length === 32) return createKeyPairSignerFromPrivateKeyBytes(bytes);
  throw new Error(`secretKey must be 64 (keypair) or 32 (seed) bytes, got ${bytes.length}`);
}

const V2_TO_V1 = Object.fromEntries(Object.entries(V1_TO_V2_NETWORK_MAP).map(([k, v]) => [v, k]));

function toV1Requirements(job) {
  const r = job.requirements;
  if (r.maxAmountRequired !== undefined) return r; // already v1
  let network = r.network;
  if (network?.includes(":")) {
    const name = V2_TO_V1[network];
    if (!name) {
      fail(
        `x402 v1 has no legacy network name for ${network}; @x402/svm 2.27.0 knows ` +
          Object.entries(V1_TO_V2_NETWORK_MAP).map(([k, v]) => `${k}=${v}`).join(", "),
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

// Builds the /verify body. Exported for smoke.mjs.
export async function buildVerifyBody(job) {
  if (job?.secretKey === undefined) throw new Error("job.secretKey is required");
  if (!job?.requirements) throw new Error("job.requirements is required");
  if (!job?.rpcUrl) throw new Error("job.rpcUrl is required (the local chain; loopback only)");
  if (!isLoopback(job.rpcUrl)) throw new Error(`job.rpcUrl ${job.rpcUrl} is not a loopback URL`);
  const x402Version = job.x402Version ?? 2;
  if (x402Version !== 1 && x402Version !== 2) throw new Error(`unsupported x402Version ${x402Version}`);

  const signer = await signerFromSecret(job.secretKey);
  const client = new x402Client();
  // Test mints are not in @x402/svm's default-asset table; the default spend controls
  // (default assets only, $1 cap) would reject them before signing.
  client.setSpendControls(false);

  let paymentRequired;
  let requirements;
  if (x402Version === 2) {
    requirements = job.requirements;
    // registerExactSvmScheme() has no rpcUrl option, so register the scheme object directly:
    // ExactSvmScheme(signer, { rpcUrl }) is the documented way to override the cluster's RPC.
    client.register(requirements.network, new ExactSvmScheme(signer, { rpcUrl: job.rpcUrl }));
    paymentRequired = {
      x402Version: 2,
      error: "PAYMENT-SIGNATURE header is required",
      resource: job.resource ?? { url: "http://localhost/resource" },
      accepts: [requirements],
      ...(job.extensions !== undefined ? { extensions: job.extensions } : {}),
    };
  } else {
    requirements = toV1Requirements(job);
    client.registerV1(requirements.network, new ExactSvmSchemeV1(signer, { rpcUrl: job.rpcUrl }));
    paymentRequired = {
      x402Version: 1,
      error: "X-PAYMENT header is required",
      accepts: [requirements],
    };
  }

  const paymentPayload = await client.createPaymentPayload(paymentRequired);
  // Same body shape as @x402/core HTTPFacilitatorClient.verify/settle.
  return jsonSafe({
    x402Version: paymentPayload.x402Version,
    paymentPayload,
    paymentRequirements: requirements,
  });
}

async function main() {
  const pretty = process.argv.includes("--pretty");
  let job;
  try {
    job = JSON.parse(await readStdin());
  } catch (e) {
    fail(`stdin is not valid JSON: ${e.message}`);
  }
  let body;
  try {
    body = await buildVerifyBody(job);
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e));
  }
  process.stdout.write(JSON.stringify(body, null, pretty ? 2 : 0) + "\n");
}

const isMain = import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("sign-svm.mjs");
if (isMain) main().catch(e => fail(e instanceof Error ? e.stack ?? e.message : String(e)));
