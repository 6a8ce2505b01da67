//! Tests of the strict decoding layer over the official types: real fixtures, round trips,
//! and malformed input of every length (all kept from the codec this layer replaced).

use solana_keypair::Keypair;
use solana_message::MessageHeader;
use solana_signature::Signature;
use solana_signer::Signer;

use super::*;
use crate::schemes::svm::keys::{self, COMPUTE_BUDGET_PROGRAM, MEMO_PROGRAM, TOKEN_PROGRAM};

// Fixtures built with @solana/kit 8.4.0 and @solana-program/token 0.16.1 (the versions pinned
// in tests/solana-chain) in a Node scratch directory, shaped like the @x402/svm exact client
// (digest §5.1): fee payer = keypair of secret seed [2; 32], client = seed [1; 32], payTo =
// seed [3; 32], devnet USDC, blockhash = 32 bytes of 7; instructions SetComputeUnitLimit(20000),
// SetComputeUnitPrice(1), TransferChecked(10000, 6 decimals) between the two USDC ATAs
// (`getTransferCheckedInstruction`), Memo "x402 fixture 0123456789abcdef". Compiled with
// `compileTransaction`, signed by the client only with `partiallySignTransaction`, encoded
// with `getBase64EncodedWireTransaction`.
pub(crate) const V0_TX: &str = "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAATdP10FfYVuEbFeylwBCXrz6yknotmTOquxumFc15WkYtHM+1nWwsytU4C4gDj0mfHT191GIV4S1XGF9cJZIwEgAIBBAiBOXcOqH0XX1ajVGbDTH7My42KkbTuN6Jd9g9bj8mzlIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29cVfrYUDwcTMIz1rajclqlUU/uq3ieryKWb3Ki2UMxyVvtxjbgQB4pwJnqJwOAZZHm5AvuwQkVBwJdu/5tY3Yf4jtELLORIVfxOpM9ATQoLQMrX/7NAaLb8bd5BgjfAC6nAwZGb+UhFzL/7K26csOb57yM5bvF9xJrLEObOkAAAAAFSlNamSkhBk0k6HFg2jh8fDW13bySu4HkH6hAQQVEjQbd9uHXZaGT2cvhRs7reawctIXtX1s3kTqM9YV+/wCpBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcEBQAFAiBOAAAFAAkDAQAAAAAAAAAHBAMEAgEKDBAnAAAAAAAABgYAHXg0MDIgZml4dHVyZSAwMTIzNDU2Nzg5YWJjZGVmAA==";
/// `tx.messageBytes` of the same transaction, as kit printed it.
const V0_MESSAGE_HEX: &str = "80020104088139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3948a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c55fad8503c1c4cc233d6b6a3725aa5514feeab789eaf22966f72a2d94331c95bedc636e0401e29c099ea2703806591e6e40beec1091507025dbbfe6d63761fe23b442cb3912157f13a933d0134282d032b5ffecd01a2dbf1b7790608df002ea70306466fe5211732ffecadba72c39be7bc8ce5bbc5f7126b2c439b3a40000000054a535a992921064d24e87160da387c7c35b5ddbc92bb81e41fa8404105448d06ddf6e1d765a193d9cbe146ceeb79ac1cb485ed5f5b37913a8cf5857eff00a907070707070707070707070707070707070707070707070707070707070707070405000502204e00000500090301000000000000000704030402010a0c10270000000000000606001d783430322066697874757265203031323334353637383961626364656600";
const CLIENT_SIGNATURE_HEX: &str = "1374fd7415f615b846c57b29700425ebcfaca49e8b664ceaaec6e985735e56918b4733ed675b0b32b54e02e200e3d267c74f5f751885784b55c617d709648c04";
/// The same instructions in a legacy message (`createTransactionMessage({ version: 'legacy' })`).
pub(crate) const LEGACY_TX: &str = "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABrhj2IVp0Y/fgCsj9ac9tT0tgx5W6Y7BEOlZt27j8QzkvsOdNHuRwAC8aK6XRnYsGCzAxwP0Wc0c6OJl3UAJAJAgEECIE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOUiojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1xV+thQPBxMwjPWtqNyWqVRT+6reJ6vIpZvcqLZQzHJW+3GNuBAHinAmeonA4BlkebkC+7BCRUHAl27/m1jdh/iO0Qss5EhV/E6kz0BNCgtAytf/s0Botvxt3kGCN8ALqcDBkZv5SEXMv/srbpyw5vnvIzlu8X3EmssQ5s6QAAAAAVKU1qZKSEGTSTocWDaOHx8NbXdvJK7geQfqEBBBUSNBt324ddloZPZy+FGzut5rBy0he1fWzeROoz1hX7/AKkHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwQFAAUCIE4AAAUACQMBAAAAAAAAAAcEAwQCAQoMECcAAAAAAAAGBgAdeDQwMiBmaXh0dXJlIDAxMjM0NTY3ODlhYmNkZWY=";
/// The v0 message compressed with `compressTransactionMessageUsingAddressLookupTables`
/// against a table (keyed by the payTo address) holding [destination ATA, mint].
pub(crate) const ALT_TX: &str = "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABL7WkwDjFnO0/gQzPLanoGugUDNqTjnvSlHna7e6Zjn0zy6eYrh2KPK1KWS289tIeKNSHalWYCk8ptQn+y8JIGgAIBAwaBOXcOqH0XX1ajVGbDTH7My42KkbTuN6Jd9g9bj8mzlIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c7cY24EAeKcCZ6icDgGWR5uQL7sEJFQcCXbv+bWN2H+IDBkZv5SEXMv/srbpyw5vnvIzlu8X3EmssQ5s6QAAAAAVKU1qZKSEGTSTocWDaOHx8NbXdvJK7geQfqEBBBUSNBt324ddloZPZy+FGzut5rBy0he1fWzeROoz1hX7/AKkHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwQDAAUCIE4AAAMACQMBAAAAAAAAAAUEAgcGAQoMECcAAAAAAAAGBAAdeDQwMiBmaXh0dXJlIDAxMjM0NTY3ODlhYmNkZWYB7UkoxijRwsbq6QM4kFmVYSlZJzpcY/k2NsFGFKyHN9EBAAEB";

pub(crate) const FEE_PAYER: &str = "9hSR6S7WPtxmTojgo6GG3k4yDPecgJY292j7xrsUGWBu";
pub(crate) const CLIENT: &str = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9";
pub(crate) const PAY_TO: &str = "GyGKxMyg1p9SsHfm15MkNUu1u9TN2JtTspcdmrtGUdse";
pub(crate) const SOURCE_ATA: &str = "H1AviagU5Y17z77v1F9qZPJ9kCbCsL4ewiZABNfGYoRs";
pub(crate) const DESTINATION_ATA: &str = "6ndWAgFxMAVLobD8WrdBj5w41GrDeJYiQX91nNSrwkZp";
pub(crate) const DEVNET_USDC: &str = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";

pub(crate) fn pk(text: &str) -> Pubkey {
    text.parse().expect("test vector is a valid pubkey")
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn fixture(text: &str) -> VersionedTransaction {
    from_base64(text).expect("fixture decodes")
}

fn serialize(tx: &VersionedTransaction) -> Vec<u8> {
    encode(tx).expect("encodes")
}

fn verifies(tx: &VersionedTransaction, index: usize) -> bool {
    match (
        tx.message.static_account_keys().get(index),
        tx.signatures.get(index),
    ) {
        (Some(key), Some(signature)) => keys::verify(key, &message_bytes(tx), signature),
        _ => false,
    }
}

/// A tiny deterministic PRNG (xorshift64*) so the fuzz-ish tests need no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// --- the kit fixtures ---

#[test]
fn v0_fixture_parses_as_kit_built_it() {
    let tx = fixture(V0_TX);
    let message = &tx.message;
    assert!(matches!(message, VersionedMessage::V0(_)));
    assert_eq!(
        *message.header(),
        MessageHeader {
            num_required_signatures: 2,
            num_readonly_signed_accounts: 1,
            num_readonly_unsigned_accounts: 4,
        }
    );
    let keys: Vec<Pubkey> = [
        FEE_PAYER,
        CLIENT,
        DESTINATION_ATA,
        SOURCE_ATA,
        DEVNET_USDC,
        "ComputeBudget111111111111111111111111111111",
        "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",
        "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    ]
    .into_iter()
    .map(pk)
    .collect();
    assert_eq!(message.static_account_keys(), keys);
    assert_eq!(message.recent_blockhash().to_bytes(), [7u8; 32]);
    assert_eq!(message.address_table_lookups().map(<[_]>::len), Some(0));
    let programs: Vec<Pubkey> = message
        .instructions()
        .iter()
        .map(|ix| keys[usize::from(ix.program_id_index)])
        .collect();
    assert_eq!(
        programs,
        [
            COMPUTE_BUDGET_PROGRAM,
            COMPUTE_BUDGET_PROGRAM,
            TOKEN_PROGRAM,
            MEMO_PROGRAM
        ]
    );
    let ixs = message.instructions();
    assert_eq!(ixs[0].data, [2, 0x20, 0x4e, 0, 0]); // 20000 LE
    assert_eq!(ixs[1].data, [3, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(ixs[2].data, [12, 0x10, 0x27, 0, 0, 0, 0, 0, 0, 6]); // 10000, 6 decimals
    assert_eq!(ixs[2].accounts, [3, 4, 2, 1]); // source, mint, destination, authority
    assert_eq!(ixs[3].data, b"x402 fixture 0123456789abcdef");
    assert_eq!(
        tx.signatures[0],
        Signature::default(),
        "the fee payer slot is empty"
    );
    assert_eq!(tx.signatures[1].as_ref(), hex(CLIENT_SIGNATURE_HEX));
    assert_eq!(message_bytes(&tx), hex(V0_MESSAGE_HEX));
    assert!(verifies(&tx, 1), "the client signed message_bytes()");
    assert!(!verifies(&tx, 0));
    assert!(!verifies(&tx, 2));
    assert_eq!(to_base64(&serialize(&tx)), V0_TX);
    assert_eq!(tx.signatures[0].to_string(), "1".repeat(64));
}

#[test]
fn fee_payer_signs_into_its_slot() {
    let mut tx = fixture(V0_TX);
    let fee_payer = Keypair::new_from_array([2; 32]);
    assert_eq!(fee_payer.pubkey(), pk(FEE_PAYER));
    tx.signatures[0] = fee_payer.sign_message(&message_bytes(&tx));
    assert!(verifies(&tx, 0) && verifies(&tx, 1));
    let again = decode(&serialize(&tx)).expect("decodes");
    assert_eq!(again, tx);
    // Only the signature bytes changed.
    let before = serialize(&fixture(V0_TX));
    let after = serialize(&tx);
    assert_eq!(before[1 + 64..], after[1 + 64..]);
    tx.signatures[1] = Signature::from([1; 64]);
    assert!(!verifies(&tx, 1));
}

#[test]
fn legacy_fixture_round_trips() {
    let tx = fixture(LEGACY_TX);
    let v0 = fixture(V0_TX);
    assert!(matches!(tx.message, VersionedMessage::Legacy(_)));
    assert_eq!(tx.message.instructions(), v0.message.instructions());
    assert_eq!(
        tx.message.static_account_keys(),
        v0.message.static_account_keys()
    );
    let v0_bytes = hex(V0_MESSAGE_HEX);
    assert_eq!(message_bytes(&tx), v0_bytes[1..v0_bytes.len() - 1]);
    assert!(verifies(&tx, 1));
    assert_eq!(to_base64(&serialize(&tx)), LEGACY_TX);
}

#[test]
fn lookup_table_fixture() {
    let tx = fixture(ALT_TX);
    let lookups = tx.message.address_table_lookups().expect("v0");
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].account_key, pk(PAY_TO));
    assert_eq!(lookups[0].writable_indexes, [0]);
    assert_eq!(lookups[0].readonly_indexes, [1]);
    assert_eq!(tx.message.static_account_keys().len(), 6);
    assert_eq!(tx.message.instructions()[2].accounts, [2, 7, 6, 1]);
    assert!(verifies(&tx, 1));
    assert_eq!(to_base64(&serialize(&tx)), ALT_TX);
}

// --- malformed input never panics ---

#[test]
fn every_truncation_and_any_trailing_byte_is_an_error() {
    for text in [V0_TX, LEGACY_TX, ALT_TX] {
        let bytes = serialize(&fixture(text));
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "prefix {len}");
        }
        // The official decoder's lenient entry point takes trailing bytes; ours does not.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(wincode::deserialize::<VersionedTransaction>(&longer).is_ok());
        assert!(matches!(decode(&longer), Err(WireError::Malformed(_))));
    }
}

#[test]
fn random_bytes_are_errors() {
    let mut rng = Rng(0x0402_5eed);
    for _ in 0..20_000 {
        let len = rng.below(600);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(decode(&bytes).is_err());
    }
}

#[test]
fn mutated_fixtures_decode_canonically_or_fail() {
    let mut rng = Rng(0xdead_beef_cafe);
    let originals: Vec<Vec<u8>> = [V0_TX, LEGACY_TX, ALT_TX]
        .iter()
        .map(|t| serialize(&fixture(t)))
        .collect();
    for round in 0..30_000 {
        let mut bytes = originals[round % originals.len()].clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] = rng.next() as u8,
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, rng.next() as u8),
            }
        }
        // Whatever decodes must re-encode to exactly the same bytes.
        if let Ok(tx) = decode(&bytes) {
            assert_eq!(serialize(&tx), bytes);
        }
    }
}

// --- sanitize rules, on hand-built bytes ---

fn compact(len: usize, out: &mut Vec<u8>) {
    let mut rest = len;
    loop {
        let low = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    compact(bytes.len(), out);
    out.extend_from_slice(bytes);
}

type RawIx<'a> = (u8, &'a [u8], &'a [u8]);
type RawLookup<'a> = (u8, &'a [u8], &'a [u8]);

/// Message bytes written by hand; keys are `[k; 32]` for each `k` in `keys`.
fn raw_message(
    version: Option<u8>,
    header: [u8; 3],
    keys: &[u8],
    ixs: &[RawIx<'_>],
    lookups: Option<&[RawLookup<'_>]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(v) = version {
        out.push(0x80 | v);
    }
    out.extend_from_slice(&header);
    compact(keys.len(), &mut out);
    for &k in keys {
        out.extend_from_slice(&[k; 32]);
    }
    out.extend_from_slice(&[9; 32]);
    compact(ixs.len(), &mut out);
    for (program, accounts, data) in ixs {
        out.push(*program);
        put(&mut out, accounts);
        put(&mut out, data);
    }
    if let Some(lookups) = lookups {
        compact(lookups.len(), &mut out);
        for (table, writable, readonly) in lookups {
            out.extend_from_slice(&[*table; 32]);
            put(&mut out, writable);
            put(&mut out, readonly);
        }
    }
    out
}

fn raw_tx(signatures: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![signatures];
    out.extend(std::iter::repeat_n(0x11, 64 * usize::from(signatures)));
    out.extend_from_slice(message);
    out
}

#[test]
fn hand_built_messages_decode_and_round_trip() {
    let legacy = raw_message(None, [1, 0, 1], &[1, 2, 3], &[(2, &[0, 1], b"hi")], None);
    let tx = decode(&raw_tx(1, &legacy)).expect("legacy decodes");
    assert_eq!(serialize(&tx), raw_tx(1, &legacy));
    // v0 reaching into the table with an account index (not a program index) is fine.
    let v0 = raw_message(
        Some(0),
        [1, 0, 1],
        &[1, 2, 3],
        &[(2, &[0, 3, 4], b"")],
        Some(&[(8, &[5], &[6])]),
    );
    let tx = decode(&raw_tx(1, &v0)).expect("v0 decodes");
    assert_eq!(serialize(&tx), raw_tx(1, &v0));
}

#[test]
fn sanitize_rejections() {
    let ok_ix: &[RawIx<'_>] = &[(2, &[0, 1], b"x")];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "v1",
            raw_message(Some(1), [1, 0, 1], &[1, 2, 3], ok_ix, Some(&[])),
        ),
        (
            "v127",
            raw_message(Some(0x7f), [1, 0, 1], &[1, 2, 3], ok_ix, Some(&[])),
        ),
        (
            "no signer",
            raw_message(None, [0, 0, 1], &[1, 2, 3], ok_ix, None),
        ),
        (
            "read-only fee payer",
            raw_message(None, [1, 1, 1], &[1, 2, 3], ok_ix, None),
        ),
        (
            "header overflow",
            raw_message(None, [2, 0, 2], &[1, 2, 3], ok_ix, None),
        ),
        (
            "duplicate key",
            raw_message(None, [1, 0, 1], &[1, 2, 1], ok_ix, None),
        ),
        (
            "fee payer program",
            raw_message(None, [1, 0, 1], &[1, 2, 3], &[(0, &[], b"")], None),
        ),
        (
            "program out of range",
            raw_message(
                None,
                [1, 0, 1],
                &[1, 2, 3],
                &[(2, &[], b""), (3, &[], b"")],
                None,
            ),
        ),
        (
            "account out of range",
            raw_message(None, [1, 0, 1], &[1, 2, 3], &[(2, &[0, 3], b"")], None),
        ),
        (
            "program from a table",
            raw_message(
                Some(0),
                [1, 0, 1],
                &[1, 2, 3],
                &[(3, &[], b"")],
                Some(&[(8, &[5], &[])]),
            ),
        ),
        (
            "table account out of range",
            raw_message(
                Some(0),
                [1, 0, 1],
                &[1, 2, 3],
                &[(2, &[4], b"")],
                Some(&[(8, &[5], &[])]),
            ),
        ),
        (
            "empty lookup",
            raw_message(
                Some(0),
                [1, 0, 1],
                &[1, 2, 3],
                ok_ix,
                Some(&[(8, &[], &[])]),
            ),
        ),
    ];
    for (what, message) in cases {
        assert!(decode(&raw_tx(1, &message)).is_err(), "{what}");
    }
    let duplicate = raw_message(None, [1, 0, 1], &[1, 2, 1], ok_ix, None);
    assert_eq!(
        decode(&raw_tx(1, &duplicate)),
        Err(WireError::DuplicateAccountKey(Pubkey::new_from_array(
            [1; 32]
        )))
    );
    // solana-message decodes a v1 message (0x81); the exact scheme does not take it.
    let v1 = raw_message(Some(1), [1, 0, 1], &[1, 2, 3], ok_ix, Some(&[]));
    assert!(matches!(
        decode(&raw_tx(1, &v1)),
        Err(WireError::UnsupportedVersion(1) | WireError::Malformed(_))
    ));
}

#[test]
fn at_most_256_accounts() {
    let writable: Vec<u8> = (0..=253).collect();
    let ok = raw_message(
        Some(0),
        [1, 0, 0],
        &[1, 2],
        &[(1, &[], b"")],
        Some(&[(250, &writable[..254], &[])]),
    );
    assert!(decode(&raw_tx(1, &ok)).is_ok(), "256 accounts is the limit");
    let readonly = [0u8];
    let over = raw_message(
        Some(0),
        [1, 0, 0],
        &[1, 2],
        &[(1, &[], b"")],
        Some(&[(250, &writable[..254], &readonly[..])]),
    );
    assert!(decode(&raw_tx(1, &over)).is_err());
}

#[test]
fn signature_count_must_match() {
    let message = raw_message(None, [2, 1, 0], &[1, 2, 3], &[(2, &[], b"")], None);
    assert!(decode(&raw_tx(2, &message)).is_ok());
    for count in [0, 1, 3] {
        assert!(decode(&raw_tx(count, &message)).is_err(), "{count}");
    }
    // The signature count itself in a non-shortest form.
    let mut aliased = vec![0x82, 0x00];
    aliased.extend_from_slice(&raw_tx(2, &message)[1..]);
    assert!(decode(&aliased).is_err());
}

#[test]
fn oversized_transactions_are_rejected_before_parsing() {
    let big = raw_message(None, [1, 0, 1], &[1, 2], &[(1, &[], &[0; 1200])], None);
    assert_eq!(
        decode(&raw_tx(1, &big)),
        Err(WireError::TooLarge(raw_tx(1, &big).len()))
    );
    let text = "A".repeat(1644 + 4);
    assert!(matches!(from_base64(&text), Err(WireError::TooLarge(_))));
}

// --- base64 ---

#[test]
fn base64_must_be_canonical() {
    for bad in [
        "Zg",
        "Zg=",
        "Zh==",
        "Zm9=",
        "Z===",
        "====",
        "Zg==Zg==",
        "Zm9v Zg==",
        "Zm9v\nZm9v",
        "Zm-v",
        "Zm_v",
        "Zm=v",
        "Zg=a",
    ] {
        assert_eq!(from_base64(bad).err(), Some(WireError::Base64), "{bad:?}");
    }
    assert!(from_base64(&V0_TX[1..]).is_err());
    assert!(from_base64("").is_err());
}
