#!/usr/bin/env node
// Self-check for the local chain: starts server.mjs on a random loopback port as a child process,
// then, through JSON-RPC only, sets up a Token and a Token-2022 mint, builds x402 v2 `exact`
// payments with the OFFICIAL @x402/svm client, co-signs them as the facilitator's fee payer,
// simulates (sigVerify), sends, waits for confirmation and checks the balances. Also exercises
// the failure paths a facilitator needs (missing fee-payer signature, duplicate, expired
// blockhash, pause/resume, dropped transactions) and the sign-svm.mjs CLI.
//
//   node smoke.mjs [--verbose]
//
// Ends with a line "smoke: N passed, N failed"; exit code 0 only when nothing failed.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  createKeyPairSignerFromPrivateKeyBytes,
  getBase58Decoder,
  getBase64EncodedWireTransaction,
  getCompiledTransactionMessageDecoder,
  getProgramDerivedAddress,
  getAddressEncoder,
  getTransactionDecoder,
  partiallySignTransaction,
  pipe,
  createTransactionMessage,
  setTransactionMessageFeePayerSigner,
  setTransactionMessageLifetimeUsingBlockhash,
  appendTransactionMessageInstruction,
  signTransactionMessageWithSigners,
  AccountRole,
} from "@solana/kit";
import { buildVerifyBody } from "./sign-svm.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const VERBOSE = process.argv.includes("--verbose");
const TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const TOKEN_2022 = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
const ATA_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL";
const SYSTEM = "11111111111111111111111111111111";
const NETWORK = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"; // devnet id; the chain reports devnet's genesis hash

let passed = 0;
let failed = 0;
function check(name, cond, detail) {
  if (cond) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}${detail !== undefined ? `: ${typeof detail === "string" ? detail : JSON.stringify(detail)}` : ""}`);
  }
}
const sleep = ms => new Promise(r => setTimeout(r, ms));
const b58 = getBase58Decoder();
const hex = u8 => Buffer.from(u8).toString("hex");

// ----- server -----
function startServer(args = []) {
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(HERE, "server.mjs"), "--port", "0", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stderr.on("data", d => VERBOSE && process.stderr.write(`[server] ${d}`));
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error("server did not start in 15 s")), 15000);
    child.stdout.on("data", d => {
      buf += d;
      const m = /^Listening on 127\.0\.0\.1:(\d+)$/m.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: `http://127.0.0.1:${m[1]}`, startMs: performance.now() - t0, stdout: () => buf });
      }
    });
    child.on("exit", code => reject(new Error(`server exited with ${code}`)));
  });
}

let RPC_URL;
let nextId = 1;
async function rpcRaw(method, params) {
  const res = await fetch(RPC_URL, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
  });
  return res.json();
}
async function rpc(method, params) {
  const r = await rpcRaw(method, params);
  if (r.error) throw Object.assign(new Error(`${method}: ${r.error.code} ${r.error.message}`), { rpc: r.error });
  return r.result;
}
async function waitConfirmed(sig, timeoutMs = 10000) {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    const { value } = await rpc("getSignatureStatuses", [[sig]]);
    const s = value[0];
    if (s && (s.confirmationStatus === "confirmed" || s.confirmationStatus === "finalized")) {
      return { status: s, ms: performance.now() - t0 };
    }
    await sleep(10);
  }
  return { status: null, ms: performance.now() - t0 };
}
async function tokenBalance(ata) {
  const r = await rpc("getTokenAccountBalance", [ata]);
  return BigInt(r.value.amount);
}
async function ataOf(owner, mint, tokenProgram) {
  const enc = getAddressEncoder();
  const [ata] = await getProgramDerivedAddress({
    programAddress: ATA_PROGRAM,
    seeds: [enc.encode(owner), enc.encode(tokenProgram), enc.encode(mint)],
  });
  return ata;
}
async function newKey() {
  const seed = new Uint8Array(randomBytes(32));
  const signer = await createKeyPairSignerFromPrivateKeyBytes(seed);
  return { signer, seed, address: signer.address };
}
function describeInstructions(b64tx) {
  const tx = getTransactionDecoder().decode(Buffer.from(b64tx, "base64"));
  const msg = getCompiledTransactionMessageDecoder().decode(tx.messageBytes);
  return {
    version: msg.version,
    header: msg.header,
    feePayer: msg.staticAccounts[0],
    signatures: Object.entries(tx.signatures).map(([a, s]) => ({ signer: a, present: s !== null })),
    instructions: msg.instructions.map(ix => ({
      program: msg.staticAccounts[ix.programAddressIndex],
      accounts: (ix.accountIndices ?? []).map(i => msg.staticAccounts[i]),
      data: hex(ix.data ?? new Uint8Array()),
    })),
    alts: (msg.addressTableLookups ?? []).length,
  };
}
async function cosign(b64tx, feePayer) {
  const tx = getTransactionDecoder().decode(Buffer.from(b64tx, "base64"));
  const signed = await partiallySignTransaction([feePayer.signer.keyPair], tx);
  return getBase64EncodedWireTransaction(signed);
}

async function main() {
  const srv = await startServer();
  RPC_URL = srv.url;
  let stopped = false;
  const stop = () => {
    if (!stopped) {
      stopped = true;
      srv.child.kill("SIGTERM");
    }
  };
  process.on("exit", stop);
  console.log(`server: ${srv.url}, ready in ${srv.startMs.toFixed(0)} ms`);
  check("server printed exactly one stdout line", srv.stdout().trim().split("\n").length === 1, srv.stdout());
  const timings = { startMs: srv.startMs };

  try {
    check("getHealth", (await rpc("getHealth", [])) === "ok");
    const genesis = await rpc("getGenesisHash", []);
    check("genesis hash matches devnet CAIP-2 id", `solana:${genesis.slice(0, 32)}` === NETWORK, genesis);

    // ----- batch + basic shapes -----
    const batchRes = await (
      await fetch(RPC_URL, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify([
          { jsonrpc: "2.0", id: "a", method: "getSlot" },
          { jsonrpc: "2.0", id: "b", method: "getLatestBlockhash", params: [{ commitment: "confirmed" }] },
        ]),
      })
    ).json();
    check(
      "batch request",
      Array.isArray(batchRes) && batchRes[0].id === "a" && typeof batchRes[1].result.value.blockhash === "string",
      batchRes,
    );

    // ----- keys, airdrops -----
    const payer = await newKey();
    const feePayer = await newKey();
    const payee = await newKey();
    const sigA = await rpc("requestAirdrop", [payer.address, 2_000_000_000]);
    const sigB = await rpc("requestAirdrop", [feePayer.address, 5_000_000_000]);
    check("airdrop confirmed", (await waitConfirmed(sigA)).status && (await waitConfirmed(sigB)).status);
    check("getBalance after airdrop", (await rpc("getBalance", [feePayer.address])).value === 5_000_000_000);

    // ----- mints -----
    const mints = {};
    for (const [label, tokenProgram] of [["token", TOKEN], ["token2022", TOKEN_2022]]) {
      const mint = await rpc("litesvm_createMint", [{ decimals: 6, tokenProgram: label }]);
      const ata = await rpc("litesvm_mintTo", [{ mint, owner: payer.address, amount: "5000000" }]);
      check(`${label}: mintTo returns the payer ATA`, ata === (await ataOf(payer.address, mint, tokenProgram)));
      const info = await rpc("getAccountInfo", [mint, { encoding: "jsonParsed" }]);
      check(
        `${label}: mint jsonParsed`,
        info.value.owner === tokenProgram && info.value.data.parsed.info.decimals === 6 &&
          info.value.data.parsed.info.supply === "5000000",
        info.value,
      );
      mints[label] = { mint, tokenProgram, payerAta: ata };
    }

    // ----- payee ATAs: REAL CreateAssociatedTokenIdempotent transactions -----
    for (const [label, m] of Object.entries(mints)) {
      const payeeAta = await ataOf(payee.address, m.mint, m.tokenProgram);
      const { value: bh } = await rpc("getLatestBlockhash", [{ commitment: "confirmed" }]);
      const ix = {
        programAddress: ATA_PROGRAM,
        accounts: [
          { address: feePayer.address, role: AccountRole.WRITABLE_SIGNER, signer: feePayer.signer },
          { address: payeeAta, role: AccountRole.WRITABLE },
          { address: payee.address, role: AccountRole.READONLY },
          { address: m.mint, role: AccountRole.READONLY },
          { address: SYSTEM, role: AccountRole.READONLY },
          { address: m.tokenProgram, role: AccountRole.READONLY },
        ],
        data: new Uint8Array([1]), // CreateIdempotent
      };
      const tx = await pipe(
        createTransactionMessage({ version: 0 }),
        t => setTransactionMessageFeePayerSigner(feePayer.signer, t),
        t => setTransactionMessageLifetimeUsingBlockhash(bh, t),
        t => appendTransactionMessageInstruction(ix, t),
        t => signTransactionMessageWithSigners(t),
      );
      const b64 = getBase64EncodedWireTransaction(tx);
      // exercise both wire encodings
      const wire = label === "token" ? b58.decode(Buffer.from(b64, "base64")) : b64;
      const sig = await rpc("sendTransaction", [wire, { encoding: label === "token" ? "base58" : "base64" }]);
      const c = await waitConfirmed(sig);
      check(`${label}: payee ATA created by the real ATA program`, c.status && c.status.err === null, c.status);
      const acc = await rpc("getAccountInfo", [payeeAta, { encoding: "base64" }]);
      const len = Buffer.from(acc.value.data[0], "base64").length;
      // Our litesvm_mintTo packs ATAs by hand; they must match what the program creates.
      const ours = await rpc("getAccountInfo", [m.payerAta, { encoding: "base64" }]);
      const oursLen = Buffer.from(ours.value.data[0], "base64").length;
      check(
        `${label}: hand-packed ATA layout matches the program's (${len} bytes, owner, lamports)`,
        len === oursLen && acc.value.owner === ours.value.owner && acc.value.lamports === ours.value.lamports,
        { program: { len, lamports: acc.value.lamports }, ours: { len: oursLen, lamports: ours.value.lamports } },
      );
      m.payeeAta = payeeAta;
    }

    // ----- x402 payments with the official client -----
    const layouts = {};
    for (const [label, m] of Object.entries(mints)) {
      const requirements = {
        scheme: "exact",
        network: NETWORK,
        amount: "1000",
        asset: m.mint,
        payTo: payee.address,
        maxTimeoutSeconds: 60,
        extra: { feePayer: feePayer.address },
      };
      const tBuild = performance.now();
      const body = await buildVerifyBody({
        secretKey: Array.from(payer.seed),
        rpcUrl: RPC_URL,
        requirements,
        x402Version: 2,
      });
      timings[`${label}BuildMs`] = performance.now() - tBuild;
      const b64 = body.paymentPayload.payload.transaction;
      check(`${label}: official client built a payload`, typeof b64 === "string" && body.x402Version === 2, body);
      const layout = describeInstructions(b64);
      layouts[label] = layout;
      check(`${label}: message fee payer is extra.feePayer`, layout.feePayer === feePayer.address);
      check(
        `${label}: only the client signed; fee-payer slot empty`,
        layout.signatures.length === 2 && !layout.signatures[0].present && layout.signatures[1].present,
        layout.signatures,
      );
      check(
        `${label}: 4 instructions (limit, price, TransferChecked, memo)`,
        layout.instructions.length === 4 && layout.instructions[2].program === m.tokenProgram &&
          layout.instructions[2].data.startsWith("0c"),
        layout.instructions,
      );

      // Simulation without the fee payer's signature must fail signature verification (-32003).
      const unsigned = await rpcRaw("simulateTransaction", [
        b64,
        { sigVerify: true, replaceRecentBlockhash: false, commitment: "confirmed", encoding: "base64" },
      ]);
      check(`${label}: sigVerify simulation of the unsigned tx → -32003`, unsigned.error?.code === -32003, unsigned);
      // Same without sigVerify → executes fine (what a facilitator may do before co-signing).
      const noVerify = await rpc("simulateTransaction", [b64, { sigVerify: false, encoding: "base64" }]);
      check(`${label}: simulation with sigVerify false passes`, noVerify.value.err === null, noVerify.value);

      const signed = await cosign(b64, feePayer);
      const tSim = performance.now();
      const sim = await rpc("simulateTransaction", [
        signed,
        { sigVerify: true, replaceRecentBlockhash: false, commitment: "confirmed", encoding: "base64" },
      ]);
      timings[`${label}SimulateMs`] = performance.now() - tSim;
      check(
        `${label}: co-signed simulation (sigVerify) ok`,
        sim.value.err === null && sim.value.unitsConsumed > 0 && Array.isArray(sim.value.logs) && sim.value.accounts === null,
        sim.value,
      );

      const feeBefore = (await rpc("getBalance", [feePayer.address])).value;
      const payerBefore = await tokenBalance(m.payerAta);
      const payeeBefore = await tokenBalance(m.payeeAta);
      const tSend = performance.now();
      const sig = await rpc("sendTransaction", [signed, { encoding: "base64", preflightCommitment: "confirmed" }]);
      const sendMs = performance.now() - tSend;
      const c = await waitConfirmed(sig);
      timings[`${label}SendMs`] = sendMs;
      timings[`${label}SendToConfirmedMs`] = sendMs + c.ms;
      check(`${label}: payment confirmed`, c.status && c.status.err === null, c.status);
      const payerAfter = await tokenBalance(m.payerAta);
      const payeeAfter = await tokenBalance(m.payeeAta);
      const feeAfter = (await rpc("getBalance", [feePayer.address])).value;
      check(`${label}: payer −1000`, payerBefore - payerAfter === 1000n, { payerBefore, payerAfter });
      check(`${label}: payee +1000`, payeeAfter - payeeBefore === 1000n, { payeeBefore, payeeAfter });
      const txInfo = await rpc("getTransaction", [sig, { commitment: "confirmed", maxSupportedTransactionVersion: 0, encoding: "json" }]);
      check(
        `${label}: fee payer paid exactly meta.fee (2 sigs + priority)`,
        feeBefore - feeAfter === txInfo.meta.fee && txInfo.meta.fee === 10001,
        { delta: feeBefore - feeAfter, fee: txInfo.meta.fee },
      );
      const post = txInfo.meta.postTokenBalances.find(b => b.owner === payee.address);
      check(
        `${label}: getTransaction meta (status, token balances, version)`,
        txInfo.meta.err === null && txInfo.version === 0 && post?.uiTokenAmount.amount === String(payeeAfter) &&
          post.programId === m.tokenProgram,
        txInfo.meta,
      );
      const v0err = await rpcRaw("getTransaction", [sig, { commitment: "confirmed" }]);
      check(`${label}: getTransaction without maxSupportedTransactionVersion → -32015`, v0err.error?.code === -32015, v0err);

      // Replaying the same transaction: preflight says AlreadyProcessed (-32002).
      const dup = await rpcRaw("sendTransaction", [signed, { encoding: "base64" }]);
      check(
        `${label}: duplicate send → -32002 AlreadyProcessed`,
        dup.error?.code === -32002 && dup.error.data?.err === "AlreadyProcessed",
        dup,
      );
      const dupSkip = await rpc("sendTransaction", [signed, { encoding: "base64", skipPreflight: true }]);
      check(`${label}: duplicate send with skipPreflight returns the signature, no second transfer`,
        dupSkip === sig && (await tokenBalance(m.payeeAta)) === payeeAfter);
    }

    // ----- failure paths on the Token mint -----
    const m = mints.token;
    const reqs = {
      scheme: "exact", network: NETWORK, amount: "1000", asset: m.mint, payTo: payee.address,
      maxTimeoutSeconds: 60, extra: { feePayer: feePayer.address },
    };
    const fresh = async () =>
      cosign(
        (await buildVerifyBody({ secretKey: Array.from(payer.seed), rpcUrl: RPC_URL, requirements: reqs })).paymentPayload
          .payload.transaction,
        feePayer,
      );

    // Program error → -32002 with data.err InstructionError (amount > balance).
    {
      const big = { ...reqs, amount: "999999999999" };
      const body = await buildVerifyBody({ secretKey: Array.from(payer.seed), rpcUrl: RPC_URL, requirements: big });
      const signed = await cosign(body.paymentPayload.payload.transaction, feePayer);
      const r = await rpcRaw("sendTransaction", [signed, { encoding: "base64" }]);
      check(
        "insufficient token funds → -32002, data.err InstructionError [2, Custom 1]",
        r.error?.code === -32002 && JSON.stringify(r.error.data?.err) === JSON.stringify({ InstructionError: [2, { Custom: 1 }] }) &&
          Array.isArray(r.error.data.logs),
        r.error,
      );
      const s = await rpc("simulateTransaction", [signed, { sigVerify: true, encoding: "base64" }]);
      check("…and simulateTransaction reports it in value.err", s.value.err?.InstructionError?.[0] === 2, s.value);
      // skipPreflight: lands as a failed transaction (fee charged), status carries err.
      const sig = await rpc("sendTransaction", [signed, { encoding: "base64", skipPreflight: true }]);
      const c = await waitConfirmed(sig);
      check("…with skipPreflight it lands failed: status.err set", c.status && c.status.err?.InstructionError !== undefined, c.status);
    }

    // Pause: accepted, not executed until resume.
    {
      const signed = await fresh();
      await rpc("litesvm_pause", []);
      const before = await tokenBalance(m.payeeAta);
      const sig = await rpc("sendTransaction", [signed, { encoding: "base64" }]);
      await sleep(300);
      const st = (await rpc("getSignatureStatuses", [[sig]])).value[0];
      check("paused: signature returned, status null, balance unchanged", st === null && (await tokenBalance(m.payeeAta)) === before, st);
      const r = await rpc("litesvm_resume", []);
      const c = await waitConfirmed(sig);
      check("resume executes the queued tx", r.executed.length === 1 && c.status?.err === null && (await tokenBalance(m.payeeAta)) === before + 1000n, r);
    }
    // Drop: discarded transactions never confirm.
    {
      const signed = await fresh();
      await rpc("litesvm_pause", []);
      const sig = await rpc("sendTransaction", [signed, { encoding: "base64" }]);
      const d = await rpc("litesvm_dropPending", []);
      await rpc("litesvm_resume", []);
      const c = await waitConfirmed(sig, 500);
      check("dropPending: tx never confirms", d.dropped[0] === sig && c.status === null, { d, status: c.status });
    }
    // Blockhash expiry.
    {
      const signed = await fresh();
      const { value: bhBefore } = await rpc("getLatestBlockhash", []);
      await rpc("litesvm_expireBlockhash", []);
      const valid = (await rpc("isBlockhashValid", [bhBefore.blockhash, { commitment: "confirmed" }])).value;
      const r = await rpcRaw("sendTransaction", [signed, { encoding: "base64" }]);
      check(
        "expired blockhash → isBlockhashValid false, send → -32002 BlockhashNotFound",
        valid === false && r.error?.code === -32002 && r.error.data?.err === "BlockhashNotFound",
        { valid, r },
      );
      const sig = await rpc("sendTransaction", [signed, { encoding: "base64", skipPreflight: true }]);
      const c = await waitConfirmed(sig, 500);
      check("…with skipPreflight: signature returned, never lands", c.status === null);
    }
    // Blockhashes stay valid across slots (history window).
    {
      const { value: bh } = await rpc("getLatestBlockhash", []);
      await rpc("litesvm_advanceSlots", [{ slots: 10 }]);
      const v1 = (await rpc("isBlockhashValid", [bh.blockhash])).value;
      const height = await rpc("getBlockHeight", []);
      await rpc("litesvm_advanceSlots", [{ slots: bh.lastValidBlockHeight - height + 1 }]);
      const v2 = (await rpc("isBlockhashValid", [bh.blockhash])).value;
      check("blockhash valid after 10 slots, invalid past lastValidBlockHeight", v1 === true && v2 === false, { v1, v2 });
    }
    // Slots advance on their own (default 400 ms).
    {
      const s1 = await rpc("getSlot", []);
      await sleep(900);
      const s2 = await rpc("getSlot", []);
      check("slots advance over time", s2 - s1 >= 2, { s1, s2 });
    }
    // Bad input never crashes the server.
    {
      const junk = await rpcRaw("sendTransaction", [Buffer.from(randomBytes(300)).toString("base64"), { encoding: "base64" }]);
      const stillUp = await rpc("getHealth", []);
      check("garbage transaction → -32602, server still up", junk.error?.code === -32602 && stillUp === "ok", junk);
    }

    // Mutated transactions (bounded mini-fuzz): errors only, the server must stay up.
    {
      const base = Buffer.from(await fresh(), "base64");
      const codes = {};
      for (let i = 0; i < 300; i++) {
        const b = Buffer.from(base);
        for (let k = 1 + (i % 3); k > 0; k--) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
        const enc = b.toString("base64");
        const r1 = await rpcRaw("simulateTransaction", [enc, { sigVerify: false, encoding: "base64" }]);
        const r2 = await rpcRaw("sendTransaction", [enc, { encoding: "base64", skipPreflight: i % 2 === 0 }]);
        for (const r of [r1, r2]) {
          const key = r.error ? String(r.error.code) : r.result?.value?.err ? "sim-err" : "ok";
          codes[key] = (codes[key] ?? 0) + 1;
        }
      }
      check("300 mutated transactions: server still healthy", (await rpc("getHealth", [])) === "ok", codes);
      if (VERBOSE) console.log("  mutation outcomes:", codes);
    }

    // Throughput: N payments built by the official client, sent concurrently.
    {
      const N = 100;
      const tBuild = performance.now();
      const txs = [];
      for (let i = 0; i < N; i++) txs.push(await fresh());
      timings.build100Ms = performance.now() - tBuild;
      const before = await tokenBalance(m.payeeAta);
      const t0 = performance.now();
      const sigs = await Promise.all(txs.map(t => rpc("sendTransaction", [t, { encoding: "base64" }])));
      timings.send100ConcurrentMs = performance.now() - t0;
      const { value } = await rpc("getSignatureStatuses", [sigs]);
      const after = await tokenBalance(m.payeeAta);
      check(
        `${N} concurrent payments all confirmed`,
        value.every(s => s && s.err === null && s.confirmationStatus === "confirmed") && after - before === BigInt(N * 1000),
        { after, before },
      );
    }

    // ----- sign-svm.mjs CLI (v2 and v1) -----
    for (const x402Version of [2, 1]) {
      const job = {
        secretKey: b58.decode(new Uint8Array([...payer.seed, ...(await ataPub(payer))])),
        rpcUrl: RPC_URL,
        x402Version,
        requirements: { ...reqs, asset: mints.token2022.mint },
      };
      const out = await runCli(join(HERE, "sign-svm.mjs"), JSON.stringify(job));
      let body;
      try {
        body = JSON.parse(out.stdout);
      } catch {}
      const ok = out.code === 0 && body?.x402Version === x402Version && typeof body.paymentPayload?.payload?.transaction === "string";
      check(`sign-svm.mjs CLI (x402Version ${x402Version}, base58 64-byte key)`, ok, out);
      if (ok) {
        const signed = await cosign(body.paymentPayload.payload.transaction, feePayer);
        const sim = await rpc("simulateTransaction", [signed, { sigVerify: true, encoding: "base64" }]);
        check(`…its transaction simulates ok (v${x402Version})`, sim.value.err === null, sim.value);
      }
    }

    console.log("\ninstruction layout produced by @x402/svm 2.27.0 (ExactSvmScheme):");
    for (const [label, l] of Object.entries(layouts)) {
      console.log(`  ${label}: v${l.version} message, header ${JSON.stringify(l.header)}, ALTs ${l.alts}`);
      l.instructions.forEach((ix, i) =>
        console.log(`    [${i}] ${ix.program} accounts=${ix.accounts.length} data=${ix.data}`),
      );
    }
    console.log("\ntimings (ms):", Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v * 10) / 10])));
  } catch (e) {
    failed++;
    console.log(`FAIL unexpected error: ${e.stack ?? e}`);
  } finally {
    stop();
  }
  console.log(`smoke: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

async function ataPub(k) {
  // 32-byte public key of a signer (for the 64-byte secret||public keypair form).
  return getAddressEncoder().encode(k.address);
}

function runCli(script, stdin) {
  return new Promise(resolve => {
    const child = spawn(process.execPath, [script], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", d => (stdout += d));
    child.stderr.on("data", d => (stderr += d));
    child.on("exit", code => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

main();
