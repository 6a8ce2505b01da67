#!/usr/bin/env node
// Print, as JSON, the error-reason strings of the INSTALLED @x402/evm facilitators
// (exact; also upto and batch-settlement for completeness), with their constant names,
// the source files that use each constant, inline reason literals, and a diff against the
// TS 2.10 table in /work/shared/docs/x402-protocol.md §3.2.
//
// The reason constants are not part of @x402/evm's public exports. This script reads the
// original TypeScript shipped inside the source maps (dist/esm/**/*.mjs.map sourcesContent),
// parses each errors.ts, finds where every constant is used, and cross-checks the values
// against the bundled chunk (located by its "// src/<path>/errors.ts" banner and imported
// by file URL). Nothing is fetched from the network.
//
// Usage: node reasons.mjs            (from tests/interop, after npm ci)

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL, fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const pkgRoot = name => path.join(here, "node_modules", ...name.split("/"));
const versionOf = name =>
  JSON.parse(fs.readFileSync(path.join(pkgRoot(name), "package.json"), "utf8")).version;

const evmEsm = path.join(pkgRoot("@x402/evm"), "dist", "esm");
const coreEsm = path.join(pkgRoot("@x402/core"), "dist", "esm");

function walk(dir, pred, out = []) {
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) walk(p, pred, out);
    else if (pred(p)) out.push(p);
  }
  return out;
}

// 1. Original TypeScript from the shipped source maps (sourcesContent).
const sources = new Map(); // "evm/src/..." -> content
for (const [pkg, dir] of [
  ["evm", evmEsm],
  ["core", coreEsm],
]) {
  for (const mapFile of walk(dir, p => p.endsWith(".mjs.map"))) {
    const m = JSON.parse(fs.readFileSync(mapFile, "utf8"));
    (m.sources ?? []).forEach((s, i) => {
      const content = m.sourcesContent?.[i];
      if (content == null) return;
      const rel = path
        .relative(path.join(dir, "..", ".."), path.resolve(path.dirname(mapFile), s))
        .split(path.sep)
        .join("/");
      sources.set(`${pkg}/${rel}`, content);
    });
  }
}

// 2. Error constants: parsed from each errors.ts source (authoritative), cross-checked against
//    the bundled chunk (found by its esbuild banner, imported by file URL). esbuild drops
//    constants nothing uses, so "droppedFromBundle" = defined in source but dead code.
const ERROR_MODULES = {
  exact: "src/exact/facilitator/errors.ts",
  upto: "src/upto/facilitator/errors.ts",
  batchSettlement: "src/batch-settlement/errors.ts",
};
const mjsFiles = walk(evmEsm, p => p.endsWith(".mjs"));
const constants = {};
const bundles = {};
const constRe = /export\s+const\s+(\w+)\s*=\s*"([^"]*)"/g;
for (const [key, srcPath] of Object.entries(ERROR_MODULES)) {
  const src = sources.get(`evm/${srcPath}`);
  if (src === undefined) continue;
  constants[key] = Object.fromEntries(
    [...src.matchAll(constRe)].map(m => [m[1], m[2]]).sort(([a], [b]) => a.localeCompare(b)),
  );
  const file = mjsFiles.find(f => fs.readFileSync(f, "utf8").includes(`// ${srcPath}\n`));
  let bundled = {};
  if (file) {
    const mod = await import(pathToFileURL(file).href);
    bundled = Object.fromEntries(Object.entries(mod).filter(([n]) => n in constants[key]));
  }
  bundles[key] = {
    source: `@x402/evm ${srcPath} (sourcesContent of dist/esm/*.mjs.map)`,
    bundledIn: file ? path.relative(here, file) : null,
    droppedFromBundle: Object.keys(constants[key]).filter(n => !(n in bundled)),
    bundleValueMismatch: Object.keys(bundled).filter(n => bundled[n] !== constants[key][n]),
  };
}

// 3. Where each constant is referenced (outside its own errors.ts).
const usedIn = {};
for (const [key, consts] of Object.entries(constants)) {
  usedIn[key] = {};
  for (const name of Object.keys(consts)) {
    const re = new RegExp(`\\b${name}\\b`);
    usedIn[key][name] = [...sources.entries()]
      .filter(([p, c]) => !p.endsWith(ERROR_MODULES[key]) && re.test(c))
      .map(([p]) => p)
      .sort();
  }
}

// 4. Inline reason literals (not via a constant).
const inline = {};
const litRe = /\b(invalidReason|errorReason)\s*:\s*"([A-Za-z0-9_]+)"/g;
for (const [p, c] of sources) {
  for (const m of c.matchAll(litRe)) {
    (inline[m[2]] ??= new Set()).add(p);
  }
}
const inlineOut = Object.fromEntries(
  Object.entries(inline)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => [k, [...v].sort()]),
);

// 5. Diff against the digest's §3.2 table (TS @x402/evm 2.10, exact/facilitator/errors.ts).
const DIGEST_2_10 = {
  ErrInvalidScheme: "invalid_exact_evm_scheme",
  ErrNetworkMismatch: "invalid_exact_evm_network_mismatch",
  ErrMissingEip712Domain: "invalid_exact_evm_missing_eip712_domain",
  ErrRecipientMismatch: "invalid_exact_evm_recipient_mismatch",
  ErrInvalidSignature: "invalid_exact_evm_signature",
  ErrValidBeforeExpired: "invalid_exact_evm_payload_authorization_valid_before",
  ErrValidAfterInFuture: "invalid_exact_evm_payload_authorization_valid_after",
  ErrInvalidAuthorizationValue: "invalid_exact_evm_authorization_value",
  ErrUndeployedSmartWallet: "invalid_exact_evm_payload_undeployed_smart_wallet",
  ErrTransactionFailed: "invalid_exact_evm_transaction_failed",
  ErrEip3009TokenNameMismatch: "invalid_exact_evm_token_name_mismatch",
  ErrEip3009TokenVersionMismatch: "invalid_exact_evm_token_version_mismatch",
  ErrEip3009NotSupported: "invalid_exact_evm_eip3009_not_supported",
  ErrEip3009NonceAlreadyUsed: "invalid_exact_evm_nonce_already_used",
  ErrEip3009InsufficientBalance: "invalid_exact_evm_insufficient_balance",
  ErrEip3009SimulationFailed: "invalid_exact_evm_transaction_simulation_failed",
  ErrUnsupportedPayloadType: "unsupported_payload_type",
  ErrInvalidTransactionState: "invalid_transaction_state",
};
const exact = constants.exact ?? {};
const exactUsed = usedIn.exact ?? {};
const diff = {
  changedValue: Object.entries(DIGEST_2_10)
    .filter(([n, v]) => n in exact && exact[n] !== v)
    .map(([n, v]) => ({ constant: n, digest: v, installed: exact[n] })),
  missingConstant: Object.keys(DIGEST_2_10).filter(n => !(n in exact)),
  unchanged: Object.keys(DIGEST_2_10).filter(n => exact[n] === DIGEST_2_10[n]),
  // Non-Permit2/ERC-20/EIP-2612 constants that the digest's §3.2 table does not have.
  newInInstalled: Object.keys(exact)
    .filter(n => !(n in DIGEST_2_10))
    .filter(n => !/^Err(Permit2|Erc20Approval|Eip2612|InvalidEip2612)/.test(n))
    .map(n => ({ constant: n, value: exact[n], usedIn: exactUsed[n] })),
  // Constants defined but referenced nowhere in the shipped sources.
  unusedConstants: Object.keys(exact).filter(n => (exactUsed[n] ?? []).length === 0),
};

const out = {
  versions: {
    "@x402/core": versionOf("@x402/core"),
    "@x402/evm": versionOf("@x402/evm"),
    viem: versionOf("viem"),
    node: process.version,
  },
  errorModules: bundles,
  constants,
  usedIn,
  inlineReasonLiterals: inlineOut,
  diffVsDigest_2_10_exact: diff,
};
process.stdout.write(JSON.stringify(out, null, 2) + "\n");
