#!/usr/bin/env node
// Produce Sign-In-With-X proofs with the OFFICIAL client (@x402/extensions/sign-in-with-x
// createSIWxPayload + encodeSIWxHeader, pinned in package.json) for the facilitator's session
// tests.
//
// stdin : one JSON job
//   {
//     "info":     { domain, uri, version, nonce, issuedAt, expirationTime?, notBefore?,
//                   statement?, resources? },         // the seller's challenge fields
//     "chainId":  "eip155:31337" | "solana:<ref>",
//     "signer":   { "kind": "eoa",    "privateKey": "0x…" }
//               | { "kind": "solana", "seedHex": "<32 bytes hex>" }
//               | { "kind": "smart",  "ownerKey": "0x…", "wallet": "0x…",
//                   "factory": "0x…", "salt": "0x…", "deployed": true|false }
//     "offsetsMs": { "issuedAt"?: n, "expirationTime"?: n, "notBefore"?: n }
//                                                      // optional: those fields set to now + n
//   }
// stdout: {"payload": {...}, "header": "<base64>"}
// On error: {"error": "..."} on stderr, exit code 2. No network access.

import { createSIWxPayload, encodeSIWxHeader } from "@x402/extensions/sign-in-with-x";
import { privateKeyToAccount } from "viem/accounts";
import { encodeFunctionData, hashMessage, parseAbi, serializeErc6492Signature } from "viem";
import { createKeyPairSignerFromPrivateKeyBytes } from "@solana/kit";

globalThis.fetch = () => {
  throw new Error("sign-siwx.mjs: network access is disabled");
};

const factoryAbi = parseAbi(["function deploy(address owner, bytes32 salt) returns (address)"]);

async function signerFor(s) {
  switch (s.kind) {
    case "eoa":
      return privateKeyToAccount(s.privateKey);
    case "solana":
      return createKeyPairSignerFromPrivateKeyBytes(Uint8Array.from(Buffer.from(s.seedHex, "hex")));
    case "smart": {
      // The repo's SmartWallet accepts its owner's raw signature of the EIP-191 hash (ERC-1271);
      // undeployed, the signature is wrapped with its deployment (ERC-6492).
      const owner = privateKeyToAccount(s.ownerKey);
      return {
        address: s.wallet,
        async signMessage({ message }) {
          const inner = await owner.sign({ hash: hashMessage(message) });
          if (s.deployed) return inner;
          return serializeErc6492Signature({
            address: s.factory,
            data: encodeFunctionData({ abi: factoryAbi, functionName: "deploy", args: [owner.address, s.salt] }),
            signature: inner,
          });
        },
      };
    }
    default:
      throw new Error(`unknown signer kind ${s.kind}`);
  }
}

try {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const job = JSON.parse(input);
  for (const [field, offset] of Object.entries(job.offsetsMs ?? {})) {
    job.info[field] = new Date(Date.now() + offset).toISOString();
  }
  const type = job.chainId.startsWith("solana:") ? "ed25519" : "eip191";
  const signer = await signerFor(job.signer);
  const payload = await createSIWxPayload({ ...job.info, chainId: job.chainId, type }, signer, job.info.uri);
  process.stdout.write(JSON.stringify({ payload, header: encodeSIWxHeader(payload) }));
} catch (e) {
  process.stderr.write(JSON.stringify({ error: String(e?.stack ?? e) }));
  process.exit(2);
}
