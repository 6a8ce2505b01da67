// Compiles contracts/src/*.sol with solc-js (standard-JSON API) and writes
// contracts/artifacts/<Name>.json = { abi, bytecode, deployedBytecode } for the
// contract named like each source file. Output is deterministic: sources are
// read in sorted order under fixed relative paths, keys are sorted recursively,
// and files are pretty-printed with a trailing newline.
//
// Usage (normally through build.sh):
//   SOLC_MODULE=/abs/path/to/node_modules/solc SOLC_VERSION=0.8.28 node compile.mjs
import { createRequire } from "node:module";
import { readdirSync, readFileSync, writeFileSync, renameSync, mkdirSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const srcDir = join(here, "src");
const outDir = join(here, "artifacts");

const solcModule = process.env.SOLC_MODULE;
const wantVersion = process.env.SOLC_VERSION;
if (!solcModule || !wantVersion) {
  console.error("compile.mjs: SOLC_MODULE and SOLC_VERSION must be set (run build.sh)");
  process.exit(2);
}
const solc = createRequire(import.meta.url)(solcModule);
const haveVersion = solc.version();
if (!haveVersion.startsWith(wantVersion + "+")) {
  console.error(`compile.mjs: expected solc ${wantVersion}, got ${haveVersion}`);
  process.exit(2);
}

const files = readdirSync(srcDir).filter((f) => f.endsWith(".sol")).sort();
const sources = {};
for (const f of files) {
  sources[`src/${f}`] = { content: readFileSync(join(srcDir, f), "utf8") };
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    // No metadata hash in the bytecode: comments or paths do not change the code.
    metadata: { bytecodeHash: "none" },
    outputSelection: {
      "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
    },
  },
};

// Sources only import each other by relative path; anything else is an error.
const findImports = (path) => ({ error: `import not found: ${path}` });
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

let failed = false;
for (const e of output.errors ?? []) {
  console.error(e.formattedMessage ?? e.message);
  if (e.severity === "error") failed = true;
}
if (failed) process.exit(1);

const sortKeys = (v) => {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v).sort()) o[k] = sortKeys(v[k]);
    return o;
  }
  return v;
};

mkdirSync(outDir, { recursive: true });
const written = new Set();
for (const f of files) {
  const name = f.slice(0, -".sol".length);
  const c = output.contracts?.[`src/${f}`]?.[name];
  if (!c) {
    console.error(`compile.mjs: src/${f} does not define contract ${name}`);
    process.exit(1);
  }
  const artifact = sortKeys({
    abi: c.abi,
    bytecode: "0x" + c.evm.bytecode.object,
    deployedBytecode: "0x" + c.evm.deployedBytecode.object,
  });
  const target = join(outDir, `${name}.json`);
  const tmp = `${target}.tmp`;
  writeFileSync(tmp, JSON.stringify(artifact, null, 2) + "\n");
  renameSync(tmp, target);
  written.add(`${name}.json`);
  console.log(`wrote artifacts/${name}.json (${(c.evm.deployedBytecode.object.length / 2) | 0} bytes runtime)`);
}

// Drop artifacts of contracts that no longer exist.
for (const f of readdirSync(outDir)) {
  if (f.endsWith(".json") && !written.has(f)) {
    unlinkSync(join(outDir, f));
    console.log(`removed stale artifacts/${f}`);
  }
}
