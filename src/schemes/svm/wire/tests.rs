//! Tests of the wire format: real fixtures, round trips, and malformed input of every length.

use super::*;
use crate::schemes::svm::keys::{COMPUTE_BUDGET_PROGRAM, MEMO_PROGRAM, TOKEN_PROGRAM};

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
    VersionedTransaction::from_base64(text).expect("fixture decodes")
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

// --- compact-u16 ---

#[test]
fn compact_u16_known_encodings() {
    // The table from Solana's short_vec tests.
    for (value, bytes) in [
        (0x0000u16, &[0x00][..]),
        (0x007f, &[0x7f]),
        (0x0080, &[0x80, 0x01]),
        (0x00ff, &[0xff, 0x01]),
        (0x0100, &[0x80, 0x02]),
        (0x07ff, &[0xff, 0x0f]),
        (0x3fff, &[0xff, 0x7f]),
        (0x4000, &[0x80, 0x80, 0x01]),
        (0xffff, &[0xff, 0xff, 0x03]),
    ] {
        let mut out = Vec::new();
        encode_compact_u16(value, &mut out);
        assert_eq!(out, bytes, "{value:#x}");
        assert_eq!(decode_compact_u16(bytes), Ok((value, bytes.len())));
    }
}

#[test]
fn compact_u16_round_trips_every_value() {
    for value in 0..=u16::MAX {
        let mut out = Vec::new();
        encode_compact_u16(value, &mut out);
        out.push(0xaa); // what follows is not consumed
        assert_eq!(decode_compact_u16(&out), Ok((value, out.len() - 1)));
    }
}

#[test]
fn compact_u16_rejects_aliases_and_overflow() {
    use WireError::*;
    for (bytes, expected) in [
        (&[][..], Truncated { offset: 0 }),
        (&[0x80], Truncated { offset: 1 }),
        (&[0xff, 0xff], Truncated { offset: 2 }),
        (&[0x80, 0x00], NonCanonicalLength { offset: 0 }),
        (&[0xff, 0x00], NonCanonicalLength { offset: 0 }),
        (&[0x80, 0x80, 0x00], NonCanonicalLength { offset: 0 }),
        (&[0xff, 0xff, 0x04], LengthOverflow { offset: 0 }),
        (&[0x80, 0x80, 0x80], LengthOverflow { offset: 0 }),
        (&[0x80, 0x80, 0x80, 0x01], LengthOverflow { offset: 0 }),
    ] {
        assert_eq!(decode_compact_u16(bytes), Err(expected), "{bytes:x?}");
    }
}

#[test]
fn compact_u16_accepts_only_canonical_encodings() {
    // Every two-byte prefix with a spread of third bytes: whatever decodes is the unique
    // encoding of its value.
    for a in 0..=255u8 {
        for b in 0..=255u8 {
            for c in [0x00, 0x01, 0x02, 0x03, 0x04, 0x7f, 0x80, 0xff] {
                let bytes = [a, b, c];
                if let Ok((value, used)) = decode_compact_u16(&bytes) {
                    let mut canonical = Vec::new();
                    encode_compact_u16(value, &mut canonical);
                    assert_eq!(canonical, bytes[..used], "{bytes:x?}");
                }
            }
        }
    }
}

// --- the kit fixtures ---

#[test]
fn v0_fixture_parses_as_kit_built_it() {
    let tx = fixture(V0_TX);
    let message = tx.message();
    assert_eq!(message.version(), MessageVersion::V0);
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
    assert_eq!(*message.fee_payer(), pk(FEE_PAYER));
    assert_eq!(message.signer_keys(), [pk(FEE_PAYER), pk(CLIENT)]);
    assert_eq!(*message.recent_blockhash(), [7u8; 32]);
    assert!(!message.uses_lookup_tables());
    assert_eq!(message.total_account_count(), 8);

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
    assert!(ixs[3].accounts.is_empty() && ixs[0].accounts.is_empty());

    assert_eq!(
        tx.signatures()[0],
        [0u8; 64],
        "the fee payer slot is left empty"
    );
    assert_eq!(tx.signatures()[1].to_vec(), hex(CLIENT_SIGNATURE_HEX));
    assert_eq!(tx.message_bytes(), hex(V0_MESSAGE_HEX));
    assert!(
        tx.signature_verifies(1),
        "the client signed message_bytes()"
    );
    assert!(!tx.signature_verifies(0));
    assert!(!tx.signature_verifies(2));
    assert_eq!(tx.to_base64(), V0_TX);
    assert_eq!(tx.transaction_id(), "1".repeat(64));
}

#[test]
fn v0_fixture_roles() {
    let message = fixture(V0_TX).message().clone();
    // Fee payer: writable signer; client: read-only signer; two ATAs writable; mint and
    // programs read-only.
    let signer: Vec<bool> = (0..9).map(|i| message.is_signer(i)).collect();
    let writable: Vec<bool> = (0..9).map(|i| message.is_writable(i)).collect();
    assert_eq!(
        signer,
        [true, true, false, false, false, false, false, false, false]
    );
    assert_eq!(
        writable,
        [true, false, true, true, false, false, false, false, false]
    );
    assert_eq!(message.account_key(7), Some(&TOKEN_PROGRAM));
    assert_eq!(message.account_key(8), None);
}

#[test]
fn fee_payer_signs_into_its_slot() {
    let mut tx = fixture(V0_TX);
    let fee_payer = Keypair::from_seed(&[2; 32]);
    assert_eq!(fee_payer.pubkey(), pk(FEE_PAYER));
    assert_eq!(tx.sign(&fee_payer), Ok(0));
    assert!(tx.signature_verifies(0) && tx.signature_verifies(1));
    assert_eq!(
        tx.transaction_id(),
        bs58::encode(tx.signatures()[0]).into_string()
    );
    let again = VersionedTransaction::decode(&tx.serialize()).expect("decodes");
    assert_eq!(again, tx);
    // Only the signature bytes changed.
    let before = fixture(V0_TX).serialize();
    let after = tx.serialize();
    assert_eq!(before[1 + 64..], after[1 + 64..]);

    let stranger = Keypair::from_seed(&[9; 32]);
    assert_eq!(
        tx.sign(&stranger),
        Err(WireError::NotASigner(stranger.pubkey()))
    );
    assert_eq!(
        tx.set_signature(2, [1; 64]),
        Err(WireError::NotASignerIndex {
            index: 2,
            signers: 2
        })
    );
    tx.set_signature(1, [1; 64]).expect("in range");
    assert!(!tx.signature_verifies(1));
}

#[test]
fn legacy_fixture_round_trips() {
    let tx = fixture(LEGACY_TX);
    let v0 = fixture(V0_TX);
    assert_eq!(tx.message().version(), MessageVersion::Legacy);
    assert_eq!(tx.message().instructions(), v0.message().instructions());
    assert_eq!(
        tx.message().static_account_keys(),
        v0.message().static_account_keys()
    );
    assert_eq!(
        tx.message_bytes(),
        hex(V0_MESSAGE_HEX)[1..hex(V0_MESSAGE_HEX).len() - 1]
    );
    assert!(tx.signature_verifies(1));
    assert_eq!(tx.to_base64(), LEGACY_TX);
}

#[test]
fn lookup_table_fixture() {
    let tx = fixture(ALT_TX);
    let message = tx.message();
    assert!(message.uses_lookup_tables());
    assert_eq!(
        message.address_table_lookups(),
        [AddressTableLookup {
            account_key: pk(PAY_TO),
            writable_indexes: vec![0],
            readonly_indexes: vec![1],
        }]
    );
    assert_eq!(message.static_account_keys().len(), 6);
    assert_eq!(message.total_account_count(), 8);
    // Loaded accounts: index 6 = the table's writable entry, 7 = its read-only entry.
    assert_eq!(message.account_key(6), None);
    assert!(message.is_writable(6) && !message.is_writable(7));
    assert!(!message.is_signer(6));
    assert_eq!(message.instructions()[2].accounts, [2, 7, 6, 1]);
    assert!(tx.signature_verifies(1));
    assert_eq!(tx.to_base64(), ALT_TX);
}

// --- malformed input never panics ---

#[test]
fn every_truncation_and_any_trailing_byte_is_an_error() {
    for text in [V0_TX, LEGACY_TX, ALT_TX] {
        let bytes = fixture(text).serialize();
        for len in 0..bytes.len() {
            assert!(
                VersionedTransaction::decode(&bytes[..len]).is_err(),
                "prefix {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            VersionedTransaction::decode(&longer),
            Err(WireError::TrailingBytes(1))
        );
        let message = fixture(text).message_bytes();
        for len in 0..message.len() {
            assert!(Message::decode(&message[..len]).is_err(), "prefix {len}");
        }
    }
}

#[test]
fn random_bytes_are_errors() {
    let mut rng = Rng(0x0402_5eed);
    for _ in 0..20_000 {
        let len = rng.below(600);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(VersionedTransaction::decode(&bytes).is_err());
        let _ = Message::decode(&bytes);
    }
}

#[test]
fn mutated_fixtures_decode_canonically_or_fail() {
    let mut rng = Rng(0xdead_beef_cafe);
    let originals: Vec<Vec<u8>> = [V0_TX, LEGACY_TX, ALT_TX]
        .iter()
        .map(|t| fixture(t).serialize())
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
        if let Ok(tx) = VersionedTransaction::decode(&bytes) {
            assert_eq!(tx.serialize(), bytes);
        }
    }
}

// --- Solana's sanitize rules, on hand-built bytes ---

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    encode_compact_u16(bytes.len() as u16, out);
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
    encode_compact_u16(keys.len() as u16, &mut out);
    for &k in keys {
        out.extend_from_slice(&[k; 32]);
    }
    out.extend_from_slice(&[9; 32]);
    encode_compact_u16(ixs.len() as u16, &mut out);
    for (program, accounts, data) in ixs {
        out.push(*program);
        put(&mut out, accounts);
        put(&mut out, data);
    }
    if let Some(lookups) = lookups {
        encode_compact_u16(lookups.len() as u16, &mut out);
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
    let tx = VersionedTransaction::decode(&raw_tx(1, &legacy)).expect("legacy decodes");
    assert_eq!(tx.serialize(), raw_tx(1, &legacy));
    // v0 reaching into the table with an account index (not a program index) is fine.
    let v0 = raw_message(
        Some(0),
        [1, 0, 1],
        &[1, 2, 3],
        &[(2, &[0, 3, 4], b"")],
        Some(&[(8, &[5], &[6])]),
    );
    let tx = VersionedTransaction::decode(&raw_tx(1, &v0)).expect("v0 decodes");
    assert_eq!(tx.serialize(), raw_tx(1, &v0));
    assert_eq!(tx.message().total_account_count(), 5);
}

#[test]
fn sanitize_rejections() {
    use WireError::*;
    let ok_ix: &[RawIx<'_>] = &[(2, &[0, 1], b"x")];
    let cases: Vec<(Vec<u8>, WireError)> = vec![
        (
            raw_message(Some(1), [1, 0, 1], &[1, 2, 3], ok_ix, Some(&[])),
            UnsupportedVersion(1),
        ),
        (
            raw_message(Some(0x7f), [1, 0, 1], &[1, 2, 3], ok_ix, Some(&[])),
            UnsupportedVersion(0x7f),
        ),
        (
            raw_message(None, [0, 0, 1], &[1, 2, 3], ok_ix, None),
            InvalidHeader("the fee payer must be a writable signer"),
        ),
        (
            raw_message(None, [1, 1, 1], &[1, 2, 3], ok_ix, None),
            InvalidHeader("the fee payer must be a writable signer"),
        ),
        (
            raw_message(None, [2, 0, 2], &[1, 2, 3], ok_ix, None),
            InvalidHeader("more signers and read-only unsigned accounts than account keys"),
        ),
        (
            raw_message(None, [1, 0, 1], &[1, 2, 1], ok_ix, None),
            DuplicateAccountKey(Pubkey([1; 32])),
        ),
        (
            raw_message(None, [1, 0, 1], &[1, 2, 3], &[(0, &[], b"")], None),
            ProgramIsFeePayer { instruction: 0 },
        ),
        (
            raw_message(
                None,
                [1, 0, 1],
                &[1, 2, 3],
                &[(2, &[], b""), (3, &[], b"")],
                None,
            ),
            ProgramIndex {
                instruction: 1,
                index: 3,
            },
        ),
        (
            raw_message(None, [1, 0, 1], &[1, 2, 3], &[(2, &[0, 3], b"")], None),
            AccountIndex {
                instruction: 0,
                index: 3,
            },
        ),
        (
            // A program id cannot come from a lookup table.
            raw_message(
                Some(0),
                [1, 0, 1],
                &[1, 2, 3],
                &[(3, &[], b"")],
                Some(&[(8, &[5], &[])]),
            ),
            ProgramIndex {
                instruction: 0,
                index: 3,
            },
        ),
        (
            raw_message(
                Some(0),
                [1, 0, 1],
                &[1, 2, 3],
                &[(2, &[4], b"")],
                Some(&[(8, &[5], &[])]),
            ),
            AccountIndex {
                instruction: 0,
                index: 4,
            },
        ),
        (
            raw_message(
                Some(0),
                [1, 0, 1],
                &[1, 2, 3],
                ok_ix,
                Some(&[(8, &[], &[])]),
            ),
            EmptyLookup(0),
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(Message::decode(&message), Err(expected.clone()));
        assert_eq!(
            VersionedTransaction::decode(&raw_tx(1, &message)),
            Err(expected)
        );
    }
}

#[test]
fn too_many_accounts() {
    let keys: Vec<u8> = (1..=200).collect();
    let writable: Vec<u8> = (0..=56).collect();
    let ok = raw_message(
        Some(0),
        [1, 0, 0],
        &keys,
        &[],
        Some(&[(250, &writable[..56], &[])]),
    );
    assert!(Message::decode(&ok).is_ok(), "256 accounts is the limit");
    let over = raw_message(
        Some(0),
        [1, 0, 0],
        &keys,
        &[],
        Some(&[(250, &writable, &[])]),
    );
    assert_eq!(Message::decode(&over), Err(WireError::TooManyAccounts(257)));
}

#[test]
fn signature_count_must_match() {
    let message = raw_message(None, [2, 1, 0], &[1, 2, 3], &[(2, &[], b"")], None);
    assert!(VersionedTransaction::decode(&raw_tx(2, &message)).is_ok());
    for count in [0, 1, 3] {
        assert_eq!(
            VersionedTransaction::decode(&raw_tx(count, &message)),
            Err(WireError::SignatureCount {
                signatures: usize::from(count),
                required: 2
            })
        );
    }
    // The signature count itself in a non-shortest form.
    let mut aliased = vec![0x82, 0x00];
    aliased.extend_from_slice(&raw_tx(2, &message)[1..]);
    assert_eq!(
        VersionedTransaction::decode(&aliased),
        Err(WireError::NonCanonicalLength { offset: 0 })
    );
}

#[test]
fn oversized_transactions_are_rejected_before_parsing() {
    let big = raw_message(None, [1, 0, 1], &[1, 2], &[(1, &[], &[0; 1200])], None);
    assert_eq!(
        VersionedTransaction::decode(&raw_tx(1, &big)),
        Err(WireError::TooLarge(raw_tx(1, &big).len()))
    );
    let text = "A".repeat(1644 + 4);
    assert!(matches!(
        VersionedTransaction::from_base64(&text),
        Err(WireError::TooLarge(_))
    ));
}

#[test]
fn message_new_checks_like_decode() {
    let header = MessageHeader {
        num_required_signatures: 1,
        num_readonly_signed_accounts: 0,
        num_readonly_unsigned_accounts: 1,
    };
    let keys = vec![Pubkey([1; 32]), Pubkey([2; 32])];
    let ix = |data: Vec<u8>| CompiledInstruction {
        program_id_index: 1,
        accounts: vec![0],
        data,
    };
    let lookup = AddressTableLookup {
        account_key: Pubkey([3; 32]),
        writable_indexes: vec![0],
        readonly_indexes: vec![],
    };
    let message = Message::new(
        MessageVersion::V0,
        header,
        keys.clone(),
        [5; 32],
        vec![ix(vec![1, 2, 3])],
        vec![lookup.clone()],
    )
    .expect("valid");
    let tx = VersionedTransaction::unsigned(message.clone());
    assert_eq!(tx.signatures(), [[0u8; 64]]);
    assert_eq!(VersionedTransaction::decode(&tx.serialize()), Ok(tx));
    assert_eq!(Message::decode(&message.serialize()), Ok(message.clone()));
    assert_eq!(
        VersionedTransaction::new(message, vec![]),
        Err(WireError::SignatureCount {
            signatures: 0,
            required: 1
        })
    );

    let legacy = |ixs, lookups| {
        Message::new(
            MessageVersion::Legacy,
            header,
            keys.clone(),
            [5; 32],
            ixs,
            lookups,
        )
    };
    assert_eq!(
        legacy(vec![ix(vec![])], vec![lookup]),
        Err(WireError::LegacyWithLookups)
    );
    assert_eq!(
        legacy(vec![ix(vec![0; 65_536])], vec![]),
        Err(WireError::TooLong {
            what: "instruction data",
            len: 65_536
        })
    );
    assert_eq!(
        legacy(
            vec![CompiledInstruction {
                program_id_index: 0,
                accounts: vec![],
                data: vec![]
            }],
            vec![]
        ),
        Err(WireError::ProgramIsFeePayer { instruction: 0 })
    );
}

#[test]
fn invoked_programs_are_read_only_unless_the_upgradeable_loader_is_present() {
    // Header says all three keys are writable; key 1 is invoked as a program.
    let plain = raw_message(None, [1, 0, 0], &[1, 2, 3], &[(1, &[2], b"")], None);
    let message = Message::decode(&plain).expect("decodes");
    assert!(message.is_writable(0) && !message.is_writable(1) && message.is_writable(2));

    let mut with_loader = raw_message(None, [1, 0, 0], &[1, 2, 3, 4], &[(1, &[2], b"")], None);
    // Replace key 4 ([4; 32]) with the upgradeable loader id.
    let at = 4 + 3 * 32;
    with_loader[at..at + 32].copy_from_slice(&BPF_LOADER_UPGRADEABLE.0);
    let message = Message::decode(&with_loader).expect("decodes");
    assert!(message.is_writable(1));
}

// --- base64 ---

#[test]
fn base64_rfc4648_vectors_and_strictness() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64::encode(plain.as_bytes()), encoded);
        assert_eq!(base64::decode(encoded), Ok(plain.as_bytes().to_vec()));
    }
    assert_eq!(base64::decode("+/+/"), Ok(vec![0xfb, 0xff, 0xbf]));
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
        assert!(base64::decode(bad).is_err(), "{bad:?}");
    }
    let mut rng = Rng(77);
    for len in 0..200 {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert_eq!(base64::decode(&base64::encode(&bytes)), Ok(bytes));
    }
}

#[test]
fn bad_base64_payloads_are_errors() {
    assert!(matches!(
        VersionedTransaction::from_base64(&V0_TX[1..]),
        Err(WireError::Base64(_))
    ));
    assert!(matches!(
        VersionedTransaction::from_base64(""),
        Err(WireError::Truncated { offset: 0 })
    ));
}
