#!/usr/bin/env node
// A local Solana "chain" for integration tests and benchmarks: one LiteSVM instance (real SVM,
// real SPL Token / Token-2022 / Associated Token programs) behind Solana JSON-RPC 2.0 over HTTP
// on loopback. See README.md in this directory for the method list and the blockhash policy.
//
//   node server.mjs [--port 0] [--host 127.0.0.1] [--slot-ms 400] [--blockhash-validity 150]
//                   [--finality-slots 32] [--cluster devnet|testnet|mainnet-beta]
//                   [--history 200000] [--deterministic] [--exit-on-stdin-close] [--verbose]
//
// Prints exactly one line `Listening on 127.0.0.1:<port>` to stdout once ready; everything else
// (verbose request logs, warnings) goes to stderr.

import http from "node:http";
import { parseArgs } from "node:util";
import { randomInt } from "node:crypto";
import { Account, FailedTransactionMetadata, LiteSVM } from "litesvm";
import {
  getAddressDecoder,
  getAddressEncoder,
  getBase58Decoder,
  getBase58Encoder,
  getCompiledTransactionMessageDecoder,
  getProgramDerivedAddress,
  getTransactionDecoder,
  getTransactionEncoder,
} from "@solana/kit";

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

const { values: opts } = parseArgs({
  options: {
    port: { type: "string", default: "8899" },
    host: { type: "string", default: "127.0.0.1" },
    "slot-ms": { type: "string", default: "400" },
    "blockhash-validity": { type: "string", default: "150" },
    "finality-slots": { type: "string", default: "32" },
    cluster: { type: "string", default: "devnet" },
    "genesis-hash": { type: "string" },
    history: { type: "string", default: "200000" },
    deterministic: { type: "boolean", default: false },
    "exit-on-stdin-close": { type: "boolean", default: false },
    verbose: { type: "boolean", default: false },
  },
  strict: true,
});

const intOpt = (name, min) => {
  const v = Number(opts[name]);
  if (!Number.isSafeInteger(v) || v < min) {
    process.stderr.write(`invalid --${name} ${opts[name]}\n`);
    process.exit(2);
  }
  return v;
};
const PORT = intOpt("port", 0);
const SLOT_MS = intOpt("slot-ms", 0); // 0 = slots only advance through litesvm_* control calls
const BLOCKHASH_VALIDITY = intOpt("blockhash-validity", 1); // in blocks, like mainnet's 150
const FINALITY_SLOTS = intOpt("finality-slots", 0); // confirmed -> finalized after this many slots
const HISTORY = intOpt("history", 1);
const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);
if (!LOOPBACK.has(opts.host)) {
  process.stderr.write(`--host must be a loopback address (127.0.0.1, ::1, localhost)\n`);
  process.exit(2);
}
// CAIP-2 "solana:<first 32 chars of the genesis hash>": devnet's hash makes the chain look like
// solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1, the id @x402/svm accepts for devnet.
const GENESIS_HASHES = {
  "mainnet-beta": "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d",
  devnet: "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG",
  testnet: "4uhcVJyU9pJkvQyS88uRDiswHXSCkY3zQawwpjk2NsNY",
};
const GENESIS_HASH = opts["genesis-hash"] ?? GENESIS_HASHES[opts.cluster];
if (!GENESIS_HASH) {
  process.stderr.write(`unknown --cluster ${opts.cluster}\n`);
  process.exit(2);
}
const VERBOSE = opts.verbose;
const log = (...a) => VERBOSE && process.stderr.write(a.join(" ") + "\n");

// ---------------------------------------------------------------------------------------------
// Constants, codecs
// ---------------------------------------------------------------------------------------------

const LITESVM_VERSION = "1.5.0";
const SYSTEM_PROGRAM = "11111111111111111111111111111111";
const TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
const ATA_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL";
const COMPUTE_BUDGET_PROGRAM = "ComputeBudget111111111111111111111111111111";
const LAMPORTS_PER_SIGNATURE = 5000n;
const U64_MAX = (1n << 64n) - 1n;
const MAX_WIRE_TX = 1232; // PACKET_DATA_SIZE
const BUILTINS = new Set([
  SYSTEM_PROGRAM,
  COMPUTE_BUDGET_PROGRAM,
  "Vote111111111111111111111111111111111111111",
  "Stake11111111111111111111111111111111111111",
  "Config1111111111111111111111111111111111111",
  "BPFLoader2111111111111111111111111111111111",
  "BPFLoaderUpgradeab1e11111111111111111111111",
  "LoaderV411111111111111111111111111111111111",
  "AddressLookupTab1e1111111111111111111111111",
]);

const addrEnc = getAddressEncoder();
const addrDec = getAddressDecoder();
const b58enc = getBase58Encoder(); // string -> bytes
const b58dec = getBase58Decoder(); // bytes -> string
const txDecoder = getTransactionDecoder();
const txEncoder = getTransactionEncoder();
const msgDecoder = getCompiledTransactionMessageDecoder();

const toB58 = bytes => b58dec.decode(bytes);
const toB64 = bytes => Buffer.from(bytes).toString("base64");
const addrBytes = a => addrEnc.encode(a);
const bytesAddr = b => addrDec.decode(b);

// ---------------------------------------------------------------------------------------------
// JSON-RPC errors and JSON with u64 numbers
// ---------------------------------------------------------------------------------------------

class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.code = code;
    this.data = data;
  }
}
const invalidParams = msg => new RpcError(-32602, msg);

// Solana's RPC writes u64 as JSON numbers (possibly > 2^53). BigInts are emitted verbatim.
const BIG = "\u0000big:";
function toJson(value) {
  const s = JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `${BIG}${v}` : v));
  return s.replace(/"\\u0000big:(-?\d+)"/g, "$1");
}

// ---------------------------------------------------------------------------------------------
// The chain
// ---------------------------------------------------------------------------------------------

const svm = new LiteSVM() // builtins, sysvars, mainnet features, SPL programs, sigverify on
  .withBlockhashCheck(false) // blockhash age is enforced here (history of ~150 blocks)
  .withTransactionHistory(0n) // signature dedup is enforced here (LiteSVM keeps only 32)
  .withLamports(5_000_000_000_000_000_000n); // airdrop faucet: 5e9 SOL
const core = svm.inner; // raw NAPI object: takes wire bytes, no kit round trips

// Random start so two server runs never produce the same blockhashes (and so the same tx bytes).
if (!opts.deterministic) for (let i = randomInt(1, 4096); i > 0; i--) core.expireBlockhash();

const SLOT0 = Number(core.getClock().slot); // LiteSVM starts at a mainnet-like slot
let slot = SLOT0;
let blockHeight = SLOT0 - 22_000_000; // block height < slot, like a real cluster
let transactionCount = 0;

// blockhash -> { slot, lastValidBlockHeight }; insertion order = age.
const blockhashes = new Map();
function registerCurrentBlockhash() {
  blockhashes.set(core.latestBlockhash(), {
    slot,
    lastValidBlockHeight: blockHeight + BLOCKHASH_VALIDITY,
  });
}
function blockhashValid(bh) {
  const e = blockhashes.get(bh);
  return e !== undefined && e.lastValidBlockHeight >= blockHeight;
}
function syncClock() {
  const c = core.getClock();
  c.slot = BigInt(slot);
  c.unixTimestamp = BigInt(Math.floor(Date.now() / 1000));
  core.setClock(c);
}
function advanceSlot() {
  slot += 1;
  blockHeight += 1;
  core.expireBlockhash();
  syncClock();
  registerCurrentBlockhash();
  for (const [bh, e] of blockhashes) {
    if (e.lastValidBlockHeight >= blockHeight) break;
    blockhashes.delete(bh);
  }
}
syncClock();
registerCurrentBlockhash();
let ticker = null;
if (SLOT_MS > 0) {
  ticker = setInterval(advanceSlot, SLOT_MS);
}

// Executed (landed) transactions, successful or failed-with-fee. sig -> record.
const records = new Map();
function addRecord(sig, rec) {
  records.delete(sig);
  records.set(sig, rec);
  while (records.size > HISTORY) records.delete(records.keys().next().value);
}
const isFinalized = rec => slot - rec.slot >= FINALITY_SLOTS;

// What the chain was shown, for tests that must prove what never reached it (litesvm_seen):
// per simulateTransaction / sendTransaction, the signatures it carried and the sigVerify flag.
const SEEN_MAX = 10_000;
const seen = { simulations: [], sends: [] };
function remember(list, entry) {
  list.push(entry);
  if (list.length > SEEN_MAX) list.shift();
}

// litesvm_pause: accepted transactions wait here (in order) until litesvm_resume.
let paused = false;
let pending = []; // decoded transactions

// ---------------------------------------------------------------------------------------------
// Transaction decoding
// ---------------------------------------------------------------------------------------------

function decodeWire(bytes) {
  if (bytes.length > MAX_WIRE_TX) {
    throw invalidParams(
      `decoded solana_transaction::versioned::VersionedTransaction too large: ${bytes.length} bytes (max: ${MAX_WIRE_TX} bytes)`,
    );
  }
  let tx, msg;
  try {
    tx = txDecoder.decode(bytes);
    msg = msgDecoder.decode(tx.messageBytes);
  } catch (e) {
    throw invalidParams(
      `failed to deserialize solana_transaction::versioned::VersionedTransaction: ${e.message}`,
    );
  }
  // LiteSVM's native side unwrap()s its own deserialisation and would abort the process on
  // bytes it can't read: only pass on bytes that re-encode identically (canonical wire format).
  const again = txEncoder.encode(tx);
  if (again.length !== bytes.length || !Buffer.from(again).equals(Buffer.from(bytes))) {
    throw invalidParams(
      "failed to deserialize solana_transaction::versioned::VersionedTransaction: non-canonical encoding",
    );
  }
  if (msg.version !== "legacy" && msg.version !== 0) {
    throw invalidParams(`unsupported transaction version ${msg.version}`);
  }
  const sigs = Object.values(tx.signatures).map(s => (s ? toB58(s) : toB58(new Uint8Array(64))));
  if (sigs.length === 0 || sigs.length !== msg.header.numSignerAccounts) {
    throw invalidParams("invalid transaction: Transaction failed to sanitize accounts offsets correctly");
  }
  return {
    bytes,
    tx,
    msg,
    sig: sigs[0],
    sigs,
    blockhash: msg.lifetimeToken,
    keys: msg.staticAccounts,
    version: msg.version,
  };
}

function decodeParam(encoded, encoding) {
  if (typeof encoded !== "string") throw invalidParams("invalid transaction: expected a string");
  let bytes;
  if (encoding === "base58") {
    try {
      bytes = b58enc.encode(encoded);
    } catch {
      throw invalidParams("invalid base58 encoding: InvalidCharacter");
    }
  } else if (encoding === "base64") {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(encoded)) throw invalidParams("invalid base64 encoding: InvalidByte");
    bytes = new Uint8Array(Buffer.from(encoded, "base64"));
  } else {
    throw invalidParams(`unsupported encoding: ${encoding}. Supported encodings: base58, base64`);
  }
  return decodeWire(bytes);
}

// Fee as the runtime charges it: 5000 per signature + ceil(CU limit * µlamports / 1e6).
function computeFee(msg) {
  const ixs = msg.instructions;
  let limit = null;
  let price = 0n;
  let nonBuiltin = 0;
  let builtin = 0;
  for (const ix of ixs) {
    const pid = msg.staticAccounts[ix.programAddressIndex];
    const d = ix.data ?? new Uint8Array();
    if (pid === COMPUTE_BUDGET_PROGRAM && d.length >= 5 && d[0] === 2) {
      limit = BigInt(Buffer.from(d).readUInt32LE(1));
    } else if (pid === COMPUTE_BUDGET_PROGRAM && d.length >= 9 && d[0] === 3) {
      price = Buffer.from(d).readBigUInt64LE(1);
    }
    if (BUILTINS.has(pid)) builtin++;
    else nonBuiltin++;
  }
  if (limit === null) limit = BigInt(Math.min(1_400_000, nonBuiltin * 200_000 + builtin * 3_000));
  if (limit > 1_400_000n) limit = 1_400_000n;
  const priority = (limit * price + 999_999n) / 1_000_000n;
  return BigInt(msg.header.numSignerAccounts) * LAMPORTS_PER_SIGNATURE + priority;
}

// ---------------------------------------------------------------------------------------------
// LiteSVM results -> Solana JSON shapes
// ---------------------------------------------------------------------------------------------

// Index = numeric value of litesvm's const enums (dist/internal.d.ts).
const TX_ERR = [
  "AccountInUse", "AccountLoadedTwice", "AccountNotFound", "ProgramAccountNotFound",
  "InsufficientFundsForFee", "InvalidAccountForFee", "AlreadyProcessed", "BlockhashNotFound",
  "CallChainTooDeep", "MissingSignatureForFee", "InvalidAccountIndex", "SignatureFailure",
  "InvalidProgramForExecution", "SanitizeFailure", "ClusterMaintenance", "AccountBorrowOutstanding",
  "WouldExceedMaxBlockCostLimit", "UnsupportedVersion", "InvalidWritableAccount",
  "WouldExceedMaxAccountCostLimit", "WouldExceedAccountDataBlockLimit", "TooManyAccountLocks",
  "AddressLookupTableNotFound", "InvalidAddressLookupTableOwner", "InvalidAddressLookupTableData",
  "InvalidAddressLookupTableIndex", "InvalidRentPayingAccount", "WouldExceedMaxVoteCostLimit",
  "WouldExceedAccountDataTotalLimit", "MaxLoadedAccountsDataSizeExceeded", "ResanitizationNeeded",
  "InvalidLoadedAccountsDataSizeLimit", "UnbalancedTransaction", "ProgramCacheHitMaxLimit",
  "CommitCancelled",
];
const IX_ERR = [
  "GenericError", "InvalidArgument", "InvalidInstructionData", "InvalidAccountData",
  "AccountDataTooSmall", "InsufficientFunds", "IncorrectProgramId", "MissingRequiredSignature",
  "AccountAlreadyInitialized", "UninitializedAccount", "UnbalancedInstruction", "ModifiedProgramId",
  "ExternalAccountLamportSpend", "ExternalAccountDataModified", "ReadonlyLamportChange",
  "ReadonlyDataModified", "DuplicateAccountIndex", "ExecutableModified", "RentEpochModified",
  "NotEnoughAccountKeys", "AccountDataSizeChanged", "AccountNotExecutable", "AccountBorrowFailed",
  "AccountBorrowOutstanding", "DuplicateAccountOutOfSync", "InvalidError", "ExecutableDataModified",
  "ExecutableLamportChange", "ExecutableAccountNotRentExempt", "UnsupportedProgramId", "CallDepth",
  "MissingAccount", "ReentrancyNotAllowed", "MaxSeedLengthExceeded", "InvalidSeeds", "InvalidRealloc",
  "ComputationalBudgetExceeded", "PrivilegeEscalation", "ProgramEnvironmentSetupFailure",
  "ProgramFailedToComplete", "ProgramFailedToCompile", "Immutable", "IncorrectAuthority",
  "AccountNotRentExempt", "InvalidAccountOwner", "ArithmeticOverflow", "UnsupportedSysvar",
  "IllegalOwner", "MaxAccountsDataAllocationsExceeded", "MaxAccountsExceeded",
  "MaxInstructionTraceLengthExceeded", "BuiltinProgramsMustConsumeComputeUnits", "BorshIoError",
];

// serde JSON of solana_transaction_error::TransactionError, as the RPC returns it.
function txErrJson(e) {
  if (typeof e === "number") return TX_ERR[e] ?? `Unknown(${e})`;
  const kind = e?.constructor?.name ?? "";
  if (kind === "TransactionErrorInstructionError") {
    const ie = e.err();
    let inner;
    if (typeof ie === "number") inner = IX_ERR[ie] ?? `Unknown(${ie})`;
    else if (ie?.constructor?.name === "InstructionErrorCustom") inner = { Custom: ie.code };
    else inner = "BorshIoError";
    return { InstructionError: [e.index, inner] };
  }
  if (kind === "TransactionErrorDuplicateInstruction") return { DuplicateInstruction: e.index };
  if (kind === "TransactionErrorInsufficientFundsForRent")
    return { InsufficientFundsForRent: { account_index: e.accountIndex } };
  if (kind === "TransactionErrorProgramExecutionTemporarilyRestricted")
    return { ProgramExecutionTemporarilyRestricted: { account_index: e.accountIndex } };
  return String(e);
}

const TX_ERR_TEXT = {
  AccountInUse: "Account in use",
  AccountLoadedTwice: "Account loaded twice",
  AccountNotFound: "Attempt to debit an account but found no record of a prior credit.",
  ProgramAccountNotFound: "Attempt to load a program that does not exist",
  InsufficientFundsForFee: "Insufficient funds for fee",
  InvalidAccountForFee: "This account may not be used to pay transaction fees",
  AlreadyProcessed: "This transaction has already been processed",
  BlockhashNotFound: "Blockhash not found",
  CallChainTooDeep: "Loader call chain is too deep",
  MissingSignatureForFee: "Transaction requires a fee but has no signature present",
  InvalidAccountIndex: "Transaction contains an invalid account reference",
  SignatureFailure: "Transaction did not pass signature verification",
  InvalidProgramForExecution: "This program may not be used for executing instructions",
  SanitizeFailure: "Transaction failed to sanitize accounts offsets correctly",
  InvalidWritableAccount: "Transaction loads a writable account that cannot be written",
  TooManyAccountLocks: "Transaction locked too many accounts",
  InvalidRentPayingAccount: "Transaction leaves an account with a lower balance than rent-exempt minimum",
  UnbalancedTransaction: "Sum of account balances before and after transaction do not match",
};
const IX_ERR_TEXT = {
  GenericError: "generic instruction error",
  InvalidArgument: "invalid program argument",
  InvalidInstructionData: "invalid instruction data",
  InvalidAccountData: "invalid account data for instruction",
  AccountDataTooSmall: "account data too small for instruction",
  InsufficientFunds: "insufficient funds for instruction",
  IncorrectProgramId: "incorrect program id for instruction",
  MissingRequiredSignature: "missing required signature for instruction",
  AccountAlreadyInitialized: "instruction requires an uninitialized account",
  UninitializedAccount: "instruction requires an initialized account",
  NotEnoughAccountKeys: "insufficient account keys for instruction",
  ComputationalBudgetExceeded: "Computational budget exceeded",
  ProgramFailedToComplete: "Program failed to complete",
  InvalidAccountOwner: "Invalid account owner",
  IllegalOwner: "Provided owner is not allowed",
  ArithmeticOverflow: "Program arithmetic overflowed",
};
function txErrText(j) {
  if (typeof j === "string") return TX_ERR_TEXT[j] ?? j;
  if (j.InstructionError) {
    const [idx, ie] = j.InstructionError;
    const t =
      typeof ie === "string"
        ? IX_ERR_TEXT[ie] ?? ie
        : `custom program error: 0x${Number(ie.Custom).toString(16)}`;
    return `Error processing Instruction ${idx}: ${t}`;
  }
  if (j.DuplicateInstruction !== undefined)
    return `Transaction contains a duplicate instruction (${j.DuplicateInstruction}) that is not allowed`;
  if (j.InsufficientFundsForRent)
    return `Transaction results in an account (${j.InsufficientFundsForRent.account_index}) with insufficient funds for rent`;
  return JSON.stringify(j);
}

function innerIxJson(meta, keysForParsed) {
  const out = [];
  meta.innerInstructions().forEach((list, index) => {
    if (list.length === 0) return;
    out.push({
      index,
      instructions: list.map(ii => {
        const ci = ii.instruction();
        if (keysForParsed) {
          // UiPartiallyDecodedInstruction (what simulateTransaction returns for unknown programs)
          return {
            programId: keysForParsed[ci.programIdIndex()] ?? null,
            accounts: Array.from(ci.accounts()).map(i => keysForParsed[i] ?? null),
            data: toB58(ci.data()),
            stackHeight: ii.stackHeight(),
          };
        }
        return {
          programIdIndex: ci.programIdIndex(),
          accounts: Array.from(ci.accounts()),
          data: toB58(ci.data()),
          stackHeight: ii.stackHeight(),
        };
      }),
    });
  });
  return out;
}

function returnDataJson(meta) {
  const rd = meta.returnData();
  const data = rd.data();
  if (!data || data.length === 0) return null;
  return { programId: bytesAddr(rd.programId()), data: [toB64(data), "base64"] };
}

// ---------------------------------------------------------------------------------------------
// SPL Token account data (packed exactly as the programs do)
// ---------------------------------------------------------------------------------------------

const MINT_LEN = 82;
const ACCOUNT_LEN = 165;
const EXTENSION_NAMES = {
  1: "transferFeeConfig", 2: "transferFeeAmount", 3: "mintCloseAuthority",
  4: "confidentialTransferMint", 5: "confidentialTransferAccount", 6: "defaultAccountState",
  7: "immutableOwner", 8: "memoTransfer", 9: "nonTransferable", 10: "interestBearingConfig",
  11: "cpiGuard", 12: "permanentDelegate", 13: "nonTransferableAccount", 14: "transferHook",
  15: "transferHookAccount", 16: "confidentialTransferFeeConfig", 17: "confidentialTransferFeeAmount",
  18: "metadataPointer", 19: "tokenMetadata", 20: "groupPointer", 21: "tokenGroup",
  22: "groupMemberPointer", 23: "tokenGroupMember", 24: "confidentialMintBurn",
  25: "scaledUiAmountConfig", 26: "pausableConfig", 27: "pausableAccount",
};
const isTokenProgram = p => p === TOKEN_PROGRAM || p === TOKEN_2022_PROGRAM;

function readCOptionPubkey(buf, off) {
  return buf.readUInt32LE(off) === 1 ? bytesAddr(buf.subarray(off + 4, off + 36)) : null;
}
function writeCOptionPubkey(buf, off, a) {
  if (a) {
    buf.writeUInt32LE(1, off);
    buf.set(addrBytes(a), off + 4);
  }
}
function parseExtensions(buf, expectType) {
  if (buf.length <= ACCOUNT_LEN) return [];
  if (buf[ACCOUNT_LEN] !== expectType) return null;
  const exts = [];
  let off = ACCOUNT_LEN + 1;
  while (off + 4 <= buf.length) {
    const t = buf.readUInt16LE(off);
    const len = buf.readUInt16LE(off + 2);
    if (t === 0) break;
    exts.push(EXTENSION_NAMES[t] ?? "unparseableExtension");
    off += 4 + len;
  }
  return exts;
}
function parseMint(owner, data) {
  if (!isTokenProgram(owner)) return null;
  const buf = Buffer.from(data);
  const okLen = buf.length === MINT_LEN || (owner === TOKEN_2022_PROGRAM && buf.length > ACCOUNT_LEN);
  if (!okLen || buf[45] !== 1) return null;
  const extensions = owner === TOKEN_2022_PROGRAM ? parseExtensions(buf, 1) : [];
  if (extensions === null) return null;
  return {
    mintAuthority: readCOptionPubkey(buf, 0),
    supply: buf.readBigUInt64LE(36),
    decimals: buf[44],
    isInitialized: true,
    freezeAuthority: readCOptionPubkey(buf, 46),
    extensions,
  };
}
function parseTokenAccount(owner, data) {
  if (!isTokenProgram(owner)) return null;
  const buf = Buffer.from(data);
  const okLen = buf.length === ACCOUNT_LEN || (owner === TOKEN_2022_PROGRAM && buf.length > ACCOUNT_LEN);
  if (!okLen || buf[108] === 0) return null;
  const extensions = owner === TOKEN_2022_PROGRAM ? parseExtensions(buf, 2) : [];
  if (extensions === null) return null;
  const isNative = buf.readUInt32LE(109) === 1;
  return {
    mint: bytesAddr(buf.subarray(0, 32)),
    owner: bytesAddr(buf.subarray(32, 64)),
    amount: buf.readBigUInt64LE(64),
    delegate: readCOptionPubkey(buf, 72),
    state: buf[108] === 2 ? "frozen" : "initialized",
    isNative,
    rentExemptReserve: isNative ? buf.readBigUInt64LE(113) : null,
    delegatedAmount: buf.readBigUInt64LE(121),
    closeAuthority: readCOptionPubkey(buf, 129),
    extensions,
  };
}
function packMint({ mintAuthority, supply, decimals, freezeAuthority }) {
  const buf = Buffer.alloc(MINT_LEN);
  writeCOptionPubkey(buf, 0, mintAuthority);
  buf.writeBigUInt64LE(supply, 36);
  buf[44] = decimals;
  buf[45] = 1; // is_initialized
  writeCOptionPubkey(buf, 46, freezeAuthority);
  return buf;
}
// Token-2022 token accounts made by the Associated Token program carry the ImmutableOwner
// extension: base (165) + AccountType::Account (2) + TLV {type 7, len 0} = 170 bytes.
function packTokenAccount({ mint, owner, amount, tokenProgram, frozen = false }) {
  const len = tokenProgram === TOKEN_2022_PROGRAM ? ACCOUNT_LEN + 1 + 4 : ACCOUNT_LEN;
  const buf = Buffer.alloc(len);
  buf.set(addrBytes(mint), 0);
  buf.set(addrBytes(owner), 32);
  buf.writeBigUInt64LE(amount, 64);
  buf[108] = frozen ? 2 : 1;
  if (tokenProgram === TOKEN_2022_PROGRAM) {
    buf[ACCOUNT_LEN] = 2;
    buf.writeUInt16LE(7, ACCOUNT_LEN + 1);
    buf.writeUInt16LE(0, ACCOUNT_LEN + 3);
  }
  return buf;
}
function uiAmount(amount, decimals) {
  const s = amount.toString().padStart(decimals + 1, "0");
  const whole = s.slice(0, s.length - decimals);
  const frac = s.slice(s.length - decimals).replace(/0+$/, "");
  const str = frac ? `${whole}.${frac}` : whole;
  return { amount: amount.toString(), decimals, uiAmount: Number(str), uiAmountString: str };
}
async function findAta(owner, mint, tokenProgram) {
  const [ata] = await getProgramDerivedAddress({
    programAddress: ATA_PROGRAM,
    seeds: [addrBytes(owner), addrBytes(tokenProgram), addrBytes(mint)],
  });
  return ata;
}

// ---------------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------------

function parseAddress(a, what = "pubkey") {
  if (typeof a !== "string") throw invalidParams(`Invalid param: ${what} must be a base58 string`);
  let b;
  try {
    b = b58enc.encode(a);
  } catch {
    throw invalidParams("Invalid param: Invalid");
  }
  if (b.length !== 32) throw invalidParams("Invalid param: WrongSize");
  return a;
}
function getAccount(address) {
  const acc = core.getAccount(addrBytes(address));
  if (acc === null) return null;
  return {
    lamports: acc.lamports(),
    data: acc.data(),
    owner: bytesAddr(acc.owner()),
    executable: acc.executable(),
  };
}
function setAccount(address, { lamports, data, owner, executable = false }) {
  core.setAccount(addrBytes(address), new Account(BigInt(lamports), data, addrBytes(owner), executable, 0n));
}
const rentExempt = len => core.minimumBalanceForRentExemption(BigInt(len));

function jsonParsedData(acc) {
  const program = acc.owner === TOKEN_2022_PROGRAM ? "spl-token-2022" : "spl-token";
  const mint = parseMint(acc.owner, acc.data);
  if (mint && (acc.data.length === MINT_LEN || acc.data[ACCOUNT_LEN] === 1)) {
    const info = {
      decimals: mint.decimals,
      freezeAuthority: mint.freezeAuthority,
      isInitialized: true,
      mintAuthority: mint.mintAuthority,
      supply: mint.supply.toString(),
    };
    if (acc.owner === TOKEN_2022_PROGRAM && mint.extensions.length)
      info.extensions = mint.extensions.map(extension => ({ extension }));
    return { program, parsed: { info, type: "mint" }, space: acc.data.length };
  }
  const ta = parseTokenAccount(acc.owner, acc.data);
  if (ta) {
    const m = getAccount(ta.mint);
    const decimals = m ? parseMint(m.owner, m.data)?.decimals ?? 0 : 0;
    const info = {
      isNative: ta.isNative,
      mint: ta.mint,
      owner: ta.owner,
      state: ta.state,
      tokenAmount: uiAmount(ta.amount, decimals),
    };
    if (ta.delegate) {
      info.delegate = ta.delegate;
      info.delegatedAmount = uiAmount(ta.delegatedAmount, decimals);
    }
    if (ta.closeAuthority) info.closeAuthority = ta.closeAuthority;
    if (acc.owner === TOKEN_2022_PROGRAM && ta.extensions.length)
      info.extensions = ta.extensions.map(extension => ({ extension }));
    return { program, parsed: { info, type: "account" }, space: acc.data.length };
  }
  return null;
}

// defaultEncoding follows agave: getAccountInfo/getProgramAccounts "binary" (legacy base58
// string), getMultipleAccounts "base64". Clients normally ask for base64 explicitly.
function encodeAccount(acc, cfg = {}, defaultEncoding = "binary") {
  if (acc === null) return null;
  const encoding = cfg.encoding ?? defaultEncoding;
  let data = acc.data;
  let out;
  if (encoding === "jsonParsed") {
    out = jsonParsedData(acc);
    if (out === null) out = [toB64(data), "base64"]; // real RPC falls back to base64
  } else {
    if (cfg.dataSlice) {
      const { offset = 0, length = data.length } = cfg.dataSlice;
      data = data.subarray(offset, offset + length);
    }
    if (encoding === "base64") out = [toB64(data), "base64"];
    else if (encoding === "base58" || encoding === "binary") {
      if (data.length > 128)
        throw invalidParams("Encoded binary (base 58) data should be less than 128 bytes, please use Base64 encoding.");
      out = encoding === "binary" ? toB58(data) : [toB58(data), "base58"];
    } else {
      throw invalidParams(`Invalid param: unsupported account encoding ${encoding} (litesvm-rpc supports base58, base64, jsonParsed)`);
    }
  }
  return {
    data: out,
    executable: acc.executable,
    lamports: acc.lamports,
    owner: acc.owner,
    rentEpoch: U64_MAX,
    space: acc.data.length,
  };
}

// ---------------------------------------------------------------------------------------------
// Executing and simulating
// ---------------------------------------------------------------------------------------------

function snapshot(keys) {
  const lamports = [];
  const tokens = [];
  keys.forEach((k, accountIndex) => {
    const acc = getAccount(k);
    lamports.push(acc ? acc.lamports : 0n);
    if (acc && isTokenProgram(acc.owner)) {
      const ta = parseTokenAccount(acc.owner, acc.data);
      if (ta && !(acc.data.length === MINT_LEN)) {
        const m = getAccount(ta.mint);
        const decimals = m ? parseMint(m.owner, m.data)?.decimals ?? 0 : 0;
        tokens.push({
          accountIndex,
          mint: ta.mint,
          owner: ta.owner,
          programId: acc.owner,
          uiTokenAmount: uiAmount(ta.amount, decimals),
        });
      }
    }
  });
  return { lamports, tokens };
}

// Submits one decoded transaction to the bank, as a leader would. Returns the record or null when
// the transaction did not land (expired blockhash, duplicate, bad signature, unpayable fee...).
function land(d) {
  if (records.has(d.sig)) return { landed: false, reason: "AlreadyProcessed" };
  if (!blockhashValid(d.blockhash)) return { landed: false, reason: "BlockhashNotFound" };
  const pre = snapshot(d.keys);
  const res = core.sendVersionedTransaction(d.bytes);
  const failed = res instanceof FailedTransactionMetadata;
  const meta = failed ? res.meta() : res;
  const err = failed ? txErrJson(res.err()) : null;
  const post = snapshot(d.keys);
  const feeCharged = post.lamports[0] < pre.lamports[0];
  const execErr =
    err !== null &&
    typeof err === "object" &&
    (err.InstructionError || err.InsufficientFundsForRent || err.DuplicateInstruction !== undefined);
  if (failed && !feeCharged && !execErr) return { landed: false, reason: err };
  transactionCount++;
  const rec = {
    slot,
    blockTime: Math.floor(Date.now() / 1000),
    err,
    fee: computeFee(d.msg),
    logs: meta.logs(),
    unitsConsumed: meta.computeUnitsConsumed(),
    innerInstructions: innerIxJson(meta, null),
    returnData: returnDataJson(meta),
    pre,
    post,
    d,
  };
  addRecord(d.sig, rec);
  return { landed: true, rec };
}

// Runs a simulation. Returns the RpcSimulateTransactionResult value, or throws -32003 when
// sigVerify is on and a signature does not verify (as the real RPC does).
function simulate(d, { sigVerify, replaceRecentBlockhash, accounts, innerInstructions }) {
  const base = {
    err: null,
    logs: [],
    accounts: null,
    unitsConsumed: 0,
    returnData: null,
    innerInstructions: null,
    replacementBlockhash: null,
    fee: null,
    loadedAccountsDataSize: 0,
  };
  if (replaceRecentBlockhash) {
    const bh = core.latestBlockhash();
    base.replacementBlockhash = { blockhash: bh, lastValidBlockHeight: blockhashes.get(bh).lastValidBlockHeight };
  } else if (!blockhashValid(d.blockhash)) {
    return { ...base, err: "BlockhashNotFound" };
  }
  if (records.has(d.sig) && sigVerify) return { ...base, err: "AlreadyProcessed" };
  if (!sigVerify) core.setSigverify(false);
  let res;
  try {
    res = core.simulateVersionedTransaction(d.bytes);
  } finally {
    if (!sigVerify) core.setSigverify(true);
  }
  const failed = res instanceof FailedTransactionMetadata;
  const meta = res.meta();
  const err = failed ? txErrJson(res.err()) : null;
  if (sigVerify && err === "SignatureFailure") {
    throw new RpcError(-32003, "Transaction signature verification failure");
  }
  if (err === "SanitizeFailure") {
    throw invalidParams(`invalid transaction: ${TX_ERR_TEXT.SanitizeFailure}`);
  }
  const value = {
    ...base,
    err,
    logs: meta.logs(),
    unitsConsumed: meta.computeUnitsConsumed(),
    returnData: returnDataJson(meta),
    fee: err === null ? computeFee(d.msg) : null,
  };
  if (innerInstructions) value.innerInstructions = innerIxJson(meta, d.keys);
  if (accounts && Array.isArray(accounts.addresses)) {
    const postMap = new Map();
    if (!failed) {
      for (const aa of res.postAccounts()) {
        const a = aa.account();
        postMap.set(bytesAddr(aa.address), {
          lamports: a.lamports(),
          data: a.data(),
          owner: bytesAddr(a.owner()),
          executable: a.executable(),
        });
      }
    }
    value.accounts = accounts.addresses.map(addr => {
      parseAddress(addr);
      const acc = postMap.has(addr) ? postMap.get(addr) : getAccount(addr);
      return acc && acc.lamports === 0n && acc.data.length === 0 ? null : encodeAccount(acc, { encoding: accounts.encoding ?? "base64" });
    });
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// RPC methods
// ---------------------------------------------------------------------------------------------

const ctx = () => ({ apiVersion: "2.2.0", slot });
const withCtx = value => ({ context: ctx(), value });
const cfgOf = (params, i) => (params[i] && typeof params[i] === "object" ? params[i] : {});
const commitmentSlot = cfg =>
  cfg.commitment === "finalized" ? Math.max(SLOT0, slot - FINALITY_SLOTS) : slot;
function controlArgs(params) {
  if (Array.isArray(params)) return params[0] && typeof params[0] === "object" ? params[0] : {};
  return params && typeof params === "object" ? params : {};
}
function u64Param(v, what) {
  let b;
  try {
    b = BigInt(v);
  } catch {
    throw invalidParams(`${what} must be an unsigned 64-bit integer (number or decimal string)`);
  }
  if (typeof v === "number" && !Number.isSafeInteger(v)) throw invalidParams(`${what}: pass large values as strings`);
  if (b < 0n || b > U64_MAX) throw invalidParams(`${what} out of u64 range`);
  return b;
}
function signatureStatus(sig) {
  const rec = records.get(sig);
  if (!rec) return null;
  const fin = isFinalized(rec);
  return {
    slot: rec.slot,
    confirmations: fin ? null : slot - rec.slot,
    err: rec.err,
    status: rec.err === null ? { Ok: null } : { Err: rec.err },
    confirmationStatus: fin ? "finalized" : "confirmed",
  };
}
function txJson(rec, encoding) {
  const { d } = rec;
  if (encoding === "base64") return [toB64(d.bytes), "base64"];
  if (encoding === "base58") return [toB58(d.bytes), "base58"];
  const message = {
    accountKeys: d.keys,
    header: {
      numReadonlySignedAccounts: d.msg.header.numReadonlySignerAccounts,
      numReadonlyUnsignedAccounts: d.msg.header.numReadonlyNonSignerAccounts,
      numRequiredSignatures: d.msg.header.numSignerAccounts,
    },
    instructions: d.msg.instructions.map(ix => ({
      accounts: Array.from(ix.accountIndices ?? []),
      data: toB58(ix.data ?? new Uint8Array()),
      programIdIndex: ix.programAddressIndex,
      stackHeight: null,
    })),
    recentBlockhash: d.blockhash,
  };
  if (d.version === 0) {
    message.addressTableLookups = (d.msg.addressTableLookups ?? []).map(l => ({
      accountKey: l.lookupTableAddress,
      readonlyIndexes: Array.from(l.readonlyIndexes ?? l.readableIndices ?? []),
      writableIndexes: Array.from(l.writableIndexes ?? l.writableIndices ?? []),
    }));
  }
  return { message, signatures: d.sigs };
}

async function sendTransaction(params) {
  const cfg = cfgOf(params, 1);
  const d = decodeParam(params[0], cfg.encoding ?? "base58");
  remember(seen.sends, { signatures: d.sigs, skipPreflight: !!cfg.skipPreflight });
  if (!cfg.skipPreflight) {
    const sim = simulate(d, { sigVerify: true });
    if (sim.err !== null) {
      throw new RpcError(-32002, `Transaction simulation failed: ${txErrText(sim.err)}`, sim);
    }
  }
  if (paused) {
    if (!pending.some(p => p.sig === d.sig)) pending.push(d);
    log(`queued ${d.sig} (paused, ${pending.length} pending)`);
  } else {
    const r = land(d);
    log(r.landed ? `landed ${d.sig} err=${JSON.stringify(r.rec.err)}` : `dropped ${d.sig}: ${JSON.stringify(r.reason)}`);
  }
  return d.sig;
}

function resume() {
  paused = false;
  const executed = [];
  const dropped = [];
  const queue = pending;
  pending = [];
  for (const d of queue) {
    const r = land(d);
    if (r.landed) executed.push({ signature: d.sig, err: r.rec.err });
    else dropped.push({ signature: d.sig, reason: r.reason });
  }
  return { executed, dropped };
}

async function createMint(a) {
  const decimals = a.decimals ?? 6;
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > 255) throw invalidParams("decimals must be 0..255");
  const tokenProgram = tokenProgramParam(a.tokenProgram);
  const mint = a.address ? parseAddress(a.address, "address") : randomAddress();
  const mintAuthority = a.mintAuthority === null ? null : a.mintAuthority ? parseAddress(a.mintAuthority) : AUTHORITY;
  const freezeAuthority = a.freezeAuthority ? parseAddress(a.freezeAuthority) : null;
  const data = packMint({ mintAuthority, supply: 0n, decimals, freezeAuthority });
  setAccount(mint, { lamports: rentExempt(data.length), data, owner: tokenProgram });
  return mint;
}
function tokenProgramParam(p) {
  if (p === undefined || p === "token" || p === TOKEN_PROGRAM) return TOKEN_PROGRAM;
  if (p === "token2022" || p === "token-2022" || p === TOKEN_2022_PROGRAM) return TOKEN_2022_PROGRAM;
  throw invalidParams(`tokenProgram must be "token" or "token2022"`);
}
function randomAddress() {
  return bytesAddr(crypto.getRandomValues(new Uint8Array(32)));
}
const AUTHORITY = randomAddress(); // default mint authority (no key: setup bypasses signatures)

async function mintTo(a) {
  const mint = parseAddress(a.mint, "mint");
  const owner = parseAddress(a.owner, "owner");
  const amount = u64Param(a.amount ?? 0, "amount");
  const first = getAccount(mint);
  if (!first || !parseMint(first.owner, first.data)) throw invalidParams(`${mint} is not an SPL Token / Token-2022 mint`);
  const ata = await findAta(owner, mint, first.owner);
  // From here on no await: read-modify-write of the mint and the ATA is atomic.
  const macc = getAccount(mint);
  const m = macc && parseMint(macc.owner, macc.data);
  if (!m || macc.owner !== first.owner) throw invalidParams(`${mint} changed while minting`);
  const tokenProgram = macc.owner;
  if (m.supply + amount > U64_MAX) throw invalidParams("mint supply would overflow u64");
  const existing = getAccount(ata);
  if (existing && existing.lamports > 0n) {
    const ta = parseTokenAccount(existing.owner, existing.data);
    if (!ta || ta.mint !== mint) throw invalidParams(`${ata} exists and is not a token account of ${mint}`);
    const buf = Buffer.from(existing.data);
    buf.writeBigUInt64LE(ta.amount + amount, 64);
    if (a.frozen !== undefined) buf[108] = a.frozen ? 2 : 1;
    setAccount(ata, { ...existing, data: buf });
  } else {
    const data = packTokenAccount({ mint, owner, amount, tokenProgram, frozen: !!a.frozen });
    setAccount(ata, { lamports: rentExempt(data.length), data, owner: tokenProgram });
  }
  const mbuf = Buffer.from(macc.data);
  mbuf.writeBigUInt64LE(m.supply + amount, 36);
  setAccount(mint, { ...macc, data: mbuf });
  return ata;
}

const methods = {
  getHealth: () => "ok",
  getVersion: () => ({ "solana-core": `2.2.0`, "feature-set": 0, litesvm: LITESVM_VERSION }),
  getGenesisHash: () => GENESIS_HASH,
  getIdentity: () => ({ identity: AUTHORITY }),
  getSlot: p => commitmentSlot(cfgOf(p, 0)),
  getBlockHeight: p => blockHeight - (slot - commitmentSlot(cfgOf(p, 0))),
  getTransactionCount: () => transactionCount,
  getEpochInfo: () => {
    const slotsInEpoch = 432000;
    return {
      absoluteSlot: slot,
      blockHeight,
      epoch: Math.floor(slot / slotsInEpoch),
      slotIndex: slot % slotsInEpoch,
      slotsInEpoch,
      transactionCount,
    };
  },
  getLatestBlockhash: () => {
    const bh = core.latestBlockhash();
    return withCtx({ blockhash: bh, lastValidBlockHeight: blockhashes.get(bh).lastValidBlockHeight });
  },
  isBlockhashValid: p => {
    if (typeof p[0] !== "string") throw invalidParams("Invalid param: blockhash must be a string");
    return withCtx(blockhashValid(p[0]));
  },
  getBalance: p => {
    const acc = getAccount(parseAddress(p[0]));
    return withCtx(acc ? acc.lamports : 0n);
  },
  getAccountInfo: p => {
    const acc = getAccount(parseAddress(p[0]));
    return withCtx(acc && acc.lamports === 0n ? null : encodeAccount(acc, cfgOf(p, 1)));
  },
  getMultipleAccounts: p => {
    if (!Array.isArray(p[0])) throw invalidParams("Invalid params: expected an array of pubkeys");
    if (p[0].length > 100) throw invalidParams("Too many inputs provided; max 100");
    const cfg = cfgOf(p, 1);
    return withCtx(
      p[0].map(a => {
        const acc = getAccount(parseAddress(a));
        return acc && acc.lamports === 0n ? null : encodeAccount(acc, cfg, "base64");
      }),
    );
  },
  getProgramAccounts: p => {
    const program = parseAddress(p[0]);
    const cfg = cfgOf(p, 1);
    const filters = cfg.filters ?? [];
    const out = [];
    for (const aa of core.getProgramAccounts(addrBytes(program))) {
      const a = aa.account();
      const acc = { lamports: a.lamports(), data: a.data(), owner: program, executable: a.executable() };
      if (!filters.every(f => matchFilter(f, acc.data))) continue;
      out.push({ pubkey: bytesAddr(aa.address), account: encodeAccount(acc, cfg) });
    }
    return cfg.withContext ? withCtx(out) : out;
  },
  getTokenAccountBalance: p => {
    const acc = getAccount(parseAddress(p[0]));
    const ta = acc && parseTokenAccount(acc.owner, acc.data);
    if (!ta) throw invalidParams("Invalid param: not a Token account");
    const m = getAccount(ta.mint);
    return withCtx(uiAmount(ta.amount, (m && parseMint(m.owner, m.data)?.decimals) ?? 0));
  },
  getTokenSupply: p => {
    const acc = getAccount(parseAddress(p[0]));
    const m = acc && parseMint(acc.owner, acc.data);
    if (!m) throw invalidParams("Invalid param: not a Token mint");
    return withCtx(uiAmount(m.supply, m.decimals));
  },
  getTokenAccountsByOwner: p => {
    const owner = parseAddress(p[0]);
    const filter = p[1] ?? {};
    const cfg = cfgOf(p, 2);
    const programs = filter.programId
      ? [tokenProgramParam(filter.programId)]
      : filter.mint
        ? [getAccount(parseAddress(filter.mint))?.owner].filter(isTokenProgram)
        : [];
    if (!filter.programId && !filter.mint) throw invalidParams("Invalid params: expected {mint} or {programId}");
    const out = [];
    for (const program of programs) {
      for (const aa of core.getProgramAccounts(addrBytes(program))) {
        const a = aa.account();
        const acc = { lamports: a.lamports(), data: a.data(), owner: program, executable: a.executable() };
        const ta = parseTokenAccount(program, acc.data);
        if (!ta || ta.owner !== owner || (filter.mint && ta.mint !== filter.mint)) continue;
        if (acc.data.length === MINT_LEN) continue;
        out.push({ pubkey: bytesAddr(aa.address), account: encodeAccount(acc, cfg, "base64") });
      }
    }
    return withCtx(out);
  },
  getMinimumBalanceForRentExemption: p => {
    const len = p[0] ?? 0;
    if (!Number.isSafeInteger(len) || len < 0) throw invalidParams("Invalid param: data length");
    return rentExempt(len);
  },
  getFeeForMessage: p => {
    let bytes;
    try {
      bytes = new Uint8Array(Buffer.from(String(p[0]), "base64"));
    } catch {
      throw invalidParams("invalid base64 message");
    }
    let msg;
    try {
      msg = msgDecoder.decode(bytes);
    } catch (e) {
      throw invalidParams(`failed to deserialize solana_message::versions::VersionedMessage: ${e.message}`);
    }
    return withCtx(blockhashValid(msg.lifetimeToken) ? computeFee(msg) : null);
  },
  getRecentPrioritizationFees: () => [],
  requestAirdrop: p => {
    const to = parseAddress(p[0]);
    const lamports = u64Param(p[1], "lamports");
    const r = core.airdrop(addrBytes(to), lamports);
    const meta = r instanceof FailedTransactionMetadata ? r.meta() : r;
    if (r instanceof FailedTransactionMetadata) {
      throw new RpcError(-32600, `airdrop request failed: ${txErrText(txErrJson(r.err()))}`);
    }
    const sig = toB58(meta.signature());
    transactionCount++;
    addRecord(sig, {
      slot,
      blockTime: Math.floor(Date.now() / 1000),
      err: null,
      fee: LAMPORTS_PER_SIGNATURE,
      logs: meta.logs(),
      unitsConsumed: meta.computeUnitsConsumed(),
      innerInstructions: [],
      returnData: null,
      pre: null,
      post: null,
      d: null,
      airdrop: { to, lamports },
    });
    return sig;
  },
  sendTransaction,
  simulateTransaction: p => {
    const cfg = cfgOf(p, 1);
    const sigVerify = !!cfg.sigVerify;
    const replaceRecentBlockhash = !!cfg.replaceRecentBlockhash;
    if (sigVerify && replaceRecentBlockhash) {
      throw invalidParams("sigVerify may not be used with replaceRecentBlockhash");
    }
    const d = decodeParam(p[0], cfg.encoding ?? "base58");
    remember(seen.simulations, { signatures: d.sigs, sigVerify });
    return withCtx(
      simulate(d, {
        sigVerify,
        replaceRecentBlockhash,
        accounts: cfg.accounts,
        innerInstructions: !!cfg.innerInstructions,
      }),
    );
  },
  getSignatureStatuses: p => {
    if (!Array.isArray(p[0])) throw invalidParams("Invalid params: expected an array of signatures");
    if (p[0].length > 256) throw invalidParams("Too many inputs provided; max 256");
    return withCtx(p[0].map(s => signatureStatus(String(s))));
  },
  getTransaction: p => {
    const cfg = typeof p[1] === "string" ? { encoding: p[1] } : cfgOf(p, 1);
    const commitment = cfg.commitment ?? "finalized";
    if (commitment === "processed") throw invalidParams("Method does not support commitment below `confirmed`");
    const encoding = cfg.encoding ?? "json";
    if (!["json", "base64", "base58"].includes(encoding)) {
      throw invalidParams(`Invalid param: unsupported transaction encoding ${encoding} (litesvm-rpc supports json, base64, base58)`);
    }
    const rec = records.get(String(p[0]));
    if (!rec || rec.d === null) return null;
    if (commitment === "finalized" && !isFinalized(rec)) return null;
    if (rec.d.version === 0 && (cfg.maxSupportedTransactionVersion ?? null) === null) {
      throw new RpcError(
        -32015,
        'Transaction version (0) is not supported by the requesting client. Please try the request again with the following configuration parameter: "maxSupportedTransactionVersion": 0',
      );
    }
    const meta = {
      computeUnitsConsumed: rec.unitsConsumed,
      err: rec.err,
      fee: rec.fee,
      innerInstructions: rec.innerInstructions,
      loadedAddresses: { readonly: [], writable: [] },
      logMessages: rec.logs,
      postBalances: rec.post.lamports,
      postTokenBalances: rec.post.tokens,
      preBalances: rec.pre.lamports,
      preTokenBalances: rec.pre.tokens,
      rewards: [],
      status: rec.err === null ? { Ok: null } : { Err: rec.err },
    };
    if (rec.returnData) meta.returnData = rec.returnData;
    return {
      blockTime: rec.blockTime,
      meta,
      slot: rec.slot,
      transaction: txJson(rec, encoding),
      version: rec.d.version,
    };
  },

  // ----- test control (non-standard) -----
  litesvm_setAccount: p => {
    const a = controlArgs(p);
    const pubkey = parseAddress(a.pubkey, "pubkey");
    const data = a.data ? new Uint8Array(Buffer.from(a.data, "base64")) : new Uint8Array();
    const owner = a.owner ? parseAddress(a.owner, "owner") : SYSTEM_PROGRAM;
    const lamports = a.lamports === undefined ? rentExempt(data.length) : u64Param(a.lamports, "lamports");
    setAccount(pubkey, { lamports, data, owner, executable: !!a.executable });
    return { pubkey, lamports, space: data.length, owner };
  },
  litesvm_expireBlockhash: p => {
    // Default: every blockhash handed out so far becomes invalid, and a new one is current.
    const a = controlArgs(p);
    if (a.all !== false) for (const e of blockhashes.values()) e.lastValidBlockHeight = -1;
    advanceSlot();
    const bh = core.latestBlockhash();
    return { slot, blockHeight, blockhash: bh, lastValidBlockHeight: blockhashes.get(bh).lastValidBlockHeight };
  },
  litesvm_advanceSlots: p => {
    const n = controlArgs(p).slots ?? 1;
    if (!Number.isSafeInteger(n) || n < 0 || n > 1_000_000) throw invalidParams("slots must be 0..1000000");
    for (let i = 0; i < n; i++) advanceSlot();
    return { slot, blockHeight, blockhash: core.latestBlockhash() };
  },
  litesvm_pause: () => {
    paused = true;
    return { paused, pending: pending.length };
  },
  litesvm_resume: () => resume(),
  litesvm_seen: () => seen,
  litesvm_dropPending: () => {
    const dropped = pending.map(d => d.sig);
    pending = [];
    return { dropped };
  },
  litesvm_status: () => ({
    paused,
    pending: pending.map(d => d.sig),
    slot,
    blockHeight,
    blockhash: core.latestBlockhash(),
    validBlockhashes: [...blockhashes.values()].filter(e => e.lastValidBlockHeight >= blockHeight).length,
    transactionCount,
    records: records.size,
    slotMs: SLOT_MS,
    blockhashValidity: BLOCKHASH_VALIDITY,
    finalitySlots: FINALITY_SLOTS,
    genesisHash: GENESIS_HASH,
    litesvm: LITESVM_VERSION,
  }),
  litesvm_createMint: p => createMint(controlArgs(p)),
  litesvm_mintTo: p => mintTo(controlArgs(p)),
  litesvm_createAta: p => mintTo({ ...controlArgs(p), amount: 0 }),
  litesvm_getAta: async p => {
    const a = controlArgs(p);
    const mint = parseAddress(a.mint, "mint");
    const tokenProgram = a.tokenProgram ? tokenProgramParam(a.tokenProgram) : getAccount(mint)?.owner;
    if (!isTokenProgram(tokenProgram)) throw invalidParams("unknown mint; pass tokenProgram");
    return findAta(parseAddress(a.owner, "owner"), mint, tokenProgram);
  },
};

function matchFilter(f, data) {
  if (f.dataSize !== undefined) return data.length === f.dataSize;
  if (f.memcmp) {
    const { offset = 0, bytes, encoding = "base58" } = f.memcmp;
    const want = encoding === "base64" ? Buffer.from(bytes, "base64") : Buffer.from(b58enc.encode(bytes));
    return Buffer.from(data.subarray(offset, offset + want.length)).equals(want);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC 2.0 over HTTP
// ---------------------------------------------------------------------------------------------

async function handleOne(req) {
  const id = req && typeof req === "object" && "id" in req ? req.id : null;
  if (!req || typeof req !== "object" || Array.isArray(req) || req.jsonrpc !== "2.0" || typeof req.method !== "string") {
    return { jsonrpc: "2.0", error: { code: -32600, message: "Invalid request" }, id };
  }
  const fn = Object.hasOwn(methods, req.method) ? methods[req.method] : undefined;
  if (!fn) return { jsonrpc: "2.0", error: { code: -32601, message: "Method not found" }, id };
  // `"params": null` is what the official Rust client sends for methods without parameters.
  const params = req.params === undefined || req.params === null ? [] : req.params;
  if (!req.method.startsWith("litesvm_") && !Array.isArray(params)) {
    return { jsonrpc: "2.0", error: { code: -32602, message: "Invalid params: expected an array" }, id };
  }
  try {
    const result = await fn(params);
    log(`${req.method} ok`);
    return { jsonrpc: "2.0", result: result === undefined ? null : result, id };
  } catch (e) {
    if (e instanceof RpcError) {
      log(`${req.method} error ${e.code} ${e.message}`);
      const error = { code: e.code, message: e.message };
      if (e.data !== undefined) error.data = e.data;
      return { jsonrpc: "2.0", error, id };
    }
    process.stderr.write(`internal error in ${req.method}: ${e?.stack ?? e}\n`);
    return { jsonrpc: "2.0", error: { code: -32603, message: `Internal error: ${e?.message ?? e}` }, id };
  }
}
const isNotification = r => r && typeof r === "object" && !Array.isArray(r) && !("id" in r);

const MAX_BODY = 50 * 1024 * 1024;
const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/health") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
    return;
  }
  if (req.method !== "POST") {
    res.writeHead(405, { allow: "POST" });
    res.end("Used HTTP Method is not allowed. POST or OPTIONS is required");
    return;
  }
  const chunks = [];
  let size = 0;
  req.on("data", c => {
    size += c.length;
    if (size > MAX_BODY) {
      res.writeHead(413);
      res.end();
      req.destroy();
    } else chunks.push(c);
  });
  req.on("end", async () => {
    if (res.writableEnded) return;
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return send(res, { jsonrpc: "2.0", error: { code: -32700, message: "Parse error" }, id: null });
    }
    if (Array.isArray(body)) {
      if (body.length === 0) {
        return send(res, { jsonrpc: "2.0", error: { code: -32600, message: "Invalid request" }, id: null });
      }
      const out = [];
      for (const r of body) {
        const resp = await handleOne(r); // in order: a batch of sends executes in order
        if (!isNotification(r)) out.push(resp);
      }
      return out.length ? send(res, out) : sendEmpty(res);
    }
    const resp = await handleOne(body);
    return isNotification(body) ? sendEmpty(res) : send(res, resp);
  });
});
function send(res, obj) {
  const s = toJson(obj);
  res.writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(s) });
  res.end(s);
}
function sendEmpty(res) {
  res.writeHead(200, { "content-length": 0 });
  res.end();
}
server.keepAliveTimeout = 60_000;

function shutdown() {
  if (ticker) clearInterval(ticker);
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
if (opts["exit-on-stdin-close"]) {
  process.stdin.on("end", shutdown);
  process.stdin.on("close", shutdown);
  process.stdin.resume();
}

server.listen(PORT, opts.host, () => {
  const { port } = server.address();
  const host = opts.host === "localhost" ? "127.0.0.1" : opts.host;
  process.stdout.write(`Listening on ${host}:${port}\n`);
});
