//! The payload's wire transaction, decoded with the official types (`solana-transaction`'s
//! `VersionedTransaction` through `wincode`, the Anza codec) under a strict layer of ours where
//! the official path is more lenient than the exact scheme wants (digest §5.1; docs/solana.md §1,
//! README "Solana crates"):
//!
//! - at most [`PACKET_DATA_SIZE`] bytes (no decoder enforces it);
//! - canonical standard base64, and exactly one transaction: no trailing bytes
//!   (`deserialize_exact`; plain `deserialize` and agave's RPC accept them), and the bytes must
//!   re-encode to themselves, so that signatures, the replay key and the recorded bytes are the
//!   client's own;
//! - legacy and v0 messages only: `solana-message` 4.4 already decodes v1 (`0x81`), whose fees
//!   live in its header, not in ComputeBudget instructions;
//! - `sanitize` (header, index bounds, signature count), plus what it leaves out: a static key
//!   listed twice (the runtime's `AccountLoadedTwice`), a program that is the fee payer or not a
//!   static key, an address table lookup that loads nothing.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use solana_message::VersionedMessage;
use solana_pubkey::Pubkey;
use solana_transaction::versioned::VersionedTransaction;

/// The largest transaction Solana accepts (an IPv6 MTU minus headers).
pub const PACKET_DATA_SIZE: usize = 1232;

/// Why bytes are not a transaction the exact scheme accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("transaction is {0} bytes; Solana accepts at most 1232")]
    TooLarge(usize),
    #[error("not canonical standard base64")]
    Base64,
    #[error("not a wire transaction: {0}")]
    Malformed(String),
    #[error("not in the canonical encoding")]
    NonCanonical,
    #[error("message version {0} is not supported (only legacy and v0)")]
    UnsupportedVersion(u8),
    #[error("the transaction does not sanitize: {0}")]
    Sanitize(String),
    #[error("account {0} is listed twice")]
    DuplicateAccountKey(Pubkey),
    #[error("instruction {0}: the program must be a static account key other than the fee payer")]
    ProgramIndex(usize),
    #[error("address table lookup {0} loads no accounts")]
    EmptyLookup(usize),
}

/// The payload's `transaction` field: standard, padded base64 of one wire transaction.
pub fn from_base64(text: &str) -> Result<VersionedTransaction, WireError> {
    // Four characters per three bytes: a longer text cannot hold a transaction of 1232 bytes.
    if text.len() > PACKET_DATA_SIZE.div_ceil(3) * 4 {
        return Err(WireError::TooLarge(text.len() / 4 * 3));
    }
    // `STANDARD` requires canonical padding and zero trailing bits: one text per byte string.
    let bytes = STANDARD.decode(text).map_err(|_| WireError::Base64)?;
    decode(&bytes)
}

/// Exactly one transaction of at most [`PACKET_DATA_SIZE`] bytes, checked as above.
pub fn decode(bytes: &[u8]) -> Result<VersionedTransaction, WireError> {
    if bytes.len() > PACKET_DATA_SIZE {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let tx: VersionedTransaction =
        wincode::deserialize_exact(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    match &tx.message {
        VersionedMessage::Legacy(_) | VersionedMessage::V0(_) => {}
        VersionedMessage::V1(_) => return Err(WireError::UnsupportedVersion(1)),
    }
    if encode(&tx).as_deref() != Some(bytes) {
        return Err(WireError::NonCanonical);
    }
    tx.sanitize()
        .map_err(|e| WireError::Sanitize(e.to_string()))?;
    let message = &tx.message;
    let keys = message.static_account_keys();
    let mut seen = HashSet::with_capacity(keys.len());
    if let Some(duplicate) = keys.iter().find(|k| !seen.insert(**k)) {
        return Err(WireError::DuplicateAccountKey(*duplicate));
    }
    for (i, ix) in message.instructions().iter().enumerate() {
        let index = usize::from(ix.program_id_index);
        if index == 0 || index >= keys.len() {
            return Err(WireError::ProgramIndex(i));
        }
    }
    let lookups = message.address_table_lookups().unwrap_or_default();
    if let Some(empty) = lookups
        .iter()
        .position(|l| l.writable_indexes.is_empty() && l.readonly_indexes.is_empty())
    {
        return Err(WireError::EmptyLookup(empty));
    }
    Ok(tx)
}

/// The wire bytes of `tx`; `None` only for a value no decoder produced (wincode refuses to
/// write lengths it cannot encode).
pub fn encode(tx: &VersionedTransaction) -> Option<Vec<u8>> {
    wincode::serialize(tx).ok()
}

/// The exact bytes the signatures sign.
pub fn message_bytes(tx: &VersionedTransaction) -> Vec<u8> {
    tx.message.serialize()
}

pub fn to_base64(raw: &[u8]) -> String {
    STANDARD.encode(raw)
}

#[cfg(test)]
pub(crate) mod tests;
