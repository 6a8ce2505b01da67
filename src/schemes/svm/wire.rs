//! The Solana transaction wire format, decoded into checked values and re-encoded byte for byte:
//! compact-u16 lengths, legacy and v0 messages, signatures (digest §5.1: the exact payload is a
//! base64 wire transaction). Decoding applies Solana's sanitize rules, so every index in a decoded
//! [`Message`] is in range and every accessor here is total.

use std::collections::HashSet;

use super::keys::{self, BPF_LOADER_UPGRADEABLE, Keypair, Pubkey};

/// The largest transaction Solana accepts (an IPv6 MTU minus headers): `PACKET_DATA_SIZE`.
pub const PACKET_DATA_SIZE: usize = 1232;
/// Accounts a message may reference, static and loaded together (indexes are one byte).
pub const MAX_ACCOUNTS: usize = 256;
/// The high bit of a message's first byte marks a versioned message; the low bits are the version.
const VERSION_PREFIX: u8 = 0x80;

/// Why bytes are not a transaction Solana would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated at byte {offset}")]
    Truncated { offset: usize },
    #[error("{0} bytes after the end of the transaction")]
    TrailingBytes(usize),
    #[error("transaction is {0} bytes; Solana accepts at most 1232")]
    TooLarge(usize),
    #[error("compact-u16 at byte {offset} is not in its shortest form")]
    NonCanonicalLength { offset: usize },
    #[error("compact-u16 at byte {offset} exceeds 65535")]
    LengthOverflow { offset: usize },
    #[error("{what} has {len} entries; the wire format holds at most 65535")]
    TooLong { what: &'static str, len: usize },
    #[error("message version {0} is not supported (only legacy and v0)")]
    UnsupportedVersion(u8),
    #[error("invalid message header: {0}")]
    InvalidHeader(&'static str),
    #[error("{0} accounts; a message may reference at most 256")]
    TooManyAccounts(usize),
    #[error("account {0} is listed twice")]
    DuplicateAccountKey(Pubkey),
    #[error("a legacy message cannot use address lookup tables")]
    LegacyWithLookups,
    #[error("address table lookup {0} loads no accounts")]
    EmptyLookup(usize),
    #[error("instruction {instruction}: the fee payer (account 0) cannot be the program")]
    ProgramIsFeePayer { instruction: usize },
    #[error("instruction {instruction}: program index {index} is not a static account key")]
    ProgramIndex { instruction: usize, index: u8 },
    #[error("instruction {instruction}: account index {index} is out of range")]
    AccountIndex { instruction: usize, index: u8 },
    #[error("{signatures} signatures for {required} required signers")]
    SignatureCount { signatures: usize, required: usize },
    #[error("account {index} is not a signer ({signers} signers)")]
    NotASignerIndex { index: usize, signers: usize },
    #[error("{0} is not a signer of this message")]
    NotASigner(Pubkey),
    #[error("not base64: {0}")]
    Base64(&'static str),
}

/// Decodes a compact-u16 ("shortvec") from the start of `bytes`: its value and encoded length.
/// Rejects the same encodings Solana does: a zero byte after the first (an alias of a shorter
/// form), a continuation bit on the third byte, values above 65535.
pub fn decode_compact_u16(bytes: &[u8]) -> Result<(u16, usize), WireError> {
    let mut reader = Reader::new(bytes);
    let value = reader.compact_len()?;
    // compact_len never returns more than u16::MAX.
    Ok((value as u16, reader.pos))
}

/// Appends `value` as a compact-u16: 7 bits per byte, low first, high bit = more follows.
pub fn encode_compact_u16(value: u16, out: &mut Vec<u8>) {
    let mut rest = value;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageVersion {
    Legacy,
    V0,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    pub num_required_signatures: u8,
    pub num_readonly_signed_accounts: u8,
    pub num_readonly_unsigned_accounts: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledInstruction {
    pub program_id_index: u8,
    pub accounts: Vec<u8>,
    pub data: Vec<u8>,
}

/// Accounts a v0 message loads from an on-chain address lookup table. Loaded accounts follow
/// the static keys: first every table's writable indexes, then every table's read-only ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressTableLookup {
    pub account_key: Pubkey,
    pub writable_indexes: Vec<u8>,
    pub readonly_indexes: Vec<u8>,
}

/// A sanitized message. Fields are private so the checks made by [`Message::new`] and
/// [`Message::decode`] hold for every value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    version: MessageVersion,
    header: MessageHeader,
    account_keys: Vec<Pubkey>,
    recent_blockhash: [u8; 32],
    instructions: Vec<CompiledInstruction>,
    address_table_lookups: Vec<AddressTableLookup>,
}

impl Message {
    /// Builds a message, applying the checks decoding applies.
    pub fn new(
        version: MessageVersion,
        header: MessageHeader,
        account_keys: Vec<Pubkey>,
        recent_blockhash: [u8; 32],
        instructions: Vec<CompiledInstruction>,
        address_table_lookups: Vec<AddressTableLookup>,
    ) -> Result<Self, WireError> {
        if version == MessageVersion::Legacy && !address_table_lookups.is_empty() {
            return Err(WireError::LegacyWithLookups);
        }
        check_encodable(&instructions, &address_table_lookups)?;
        let message = Self {
            version,
            header,
            account_keys,
            recent_blockhash,
            instructions,
            address_table_lookups,
        };
        message.sanitize()?;
        Ok(message)
    }

    /// Decodes exactly one message; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut reader = Reader::new(bytes);
        let message = Self::read(&mut reader)?;
        reader.finish()?;
        Ok(message)
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, WireError> {
        let first = reader.peek()?;
        let version = if first & VERSION_PREFIX == 0 {
            MessageVersion::Legacy
        } else {
            reader.u8()?;
            match first & !VERSION_PREFIX {
                0 => MessageVersion::V0,
                other => return Err(WireError::UnsupportedVersion(other)),
            }
        };
        let header = MessageHeader {
            num_required_signatures: reader.u8()?,
            num_readonly_signed_accounts: reader.u8()?,
            num_readonly_unsigned_accounts: reader.u8()?,
        };
        let account_keys = reader.vec(|r| Ok(Pubkey(r.array()?)))?;
        let recent_blockhash = reader.array()?;
        let instructions = reader.vec(|r| {
            Ok(CompiledInstruction {
                program_id_index: r.u8()?,
                accounts: r.bytes()?,
                data: r.bytes()?,
            })
        })?;
        let address_table_lookups = match version {
            MessageVersion::Legacy => Vec::new(),
            MessageVersion::V0 => reader.vec(|r| {
                Ok(AddressTableLookup {
                    account_key: Pubkey(r.array()?),
                    writable_indexes: r.bytes()?,
                    readonly_indexes: r.bytes()?,
                })
            })?,
        };
        let message = Self {
            version,
            header,
            account_keys,
            recent_blockhash,
            instructions,
            address_table_lookups,
        };
        message.sanitize()?;
        Ok(message)
    }

    /// Solana's `Message::sanitize` / `v0::Message::sanitize`, plus the runtime's duplicate-key
    /// check (`AccountLoadedTwice`) over the static keys; loaded keys need the tables.
    fn sanitize(&self) -> Result<(), WireError> {
        let header = &self.header;
        let signers = usize::from(header.num_required_signatures);
        if header.num_readonly_signed_accounts >= header.num_required_signatures {
            return Err(WireError::InvalidHeader(
                "the fee payer must be a writable signer",
            ));
        }
        if signers + usize::from(header.num_readonly_unsigned_accounts) > self.account_keys.len() {
            return Err(WireError::InvalidHeader(
                "more signers and read-only unsigned accounts than account keys",
            ));
        }
        let total = self.total_account_count();
        if total > MAX_ACCOUNTS {
            return Err(WireError::TooManyAccounts(total));
        }
        let mut seen = HashSet::with_capacity(self.account_keys.len());
        if let Some(duplicate) = self.account_keys.iter().find(|key| !seen.insert(*key)) {
            return Err(WireError::DuplicateAccountKey(*duplicate));
        }
        if let Some(empty) = self
            .address_table_lookups
            .iter()
            .position(|l| l.writable_indexes.is_empty() && l.readonly_indexes.is_empty())
        {
            return Err(WireError::EmptyLookup(empty));
        }
        for (instruction, ix) in self.instructions.iter().enumerate() {
            if ix.program_id_index == 0 {
                return Err(WireError::ProgramIsFeePayer { instruction });
            }
            // Programs must be static keys: the runtime resolves them before loading tables.
            if usize::from(ix.program_id_index) >= self.account_keys.len() {
                return Err(WireError::ProgramIndex {
                    instruction,
                    index: ix.program_id_index,
                });
            }
            if let Some(&index) = ix.accounts.iter().find(|&&i| usize::from(i) >= total) {
                return Err(WireError::AccountIndex { instruction, index });
            }
        }
        Ok(())
    }

    /// The exact bytes the signatures sign.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PACKET_DATA_SIZE);
        if self.version == MessageVersion::V0 {
            out.push(VERSION_PREFIX);
        }
        out.extend_from_slice(&[
            self.header.num_required_signatures,
            self.header.num_readonly_signed_accounts,
            self.header.num_readonly_unsigned_accounts,
        ]);
        put_len(&mut out, self.account_keys.len());
        for key in &self.account_keys {
            out.extend_from_slice(&key.0);
        }
        out.extend_from_slice(&self.recent_blockhash);
        put_len(&mut out, self.instructions.len());
        for ix in &self.instructions {
            out.push(ix.program_id_index);
            put_bytes(&mut out, &ix.accounts);
            put_bytes(&mut out, &ix.data);
        }
        if self.version == MessageVersion::V0 {
            put_len(&mut out, self.address_table_lookups.len());
            for lookup in &self.address_table_lookups {
                out.extend_from_slice(&lookup.account_key.0);
                put_bytes(&mut out, &lookup.writable_indexes);
                put_bytes(&mut out, &lookup.readonly_indexes);
            }
        }
        out
    }

    pub fn version(&self) -> MessageVersion {
        self.version
    }

    pub fn header(&self) -> &MessageHeader {
        &self.header
    }

    pub fn static_account_keys(&self) -> &[Pubkey] {
        &self.account_keys
    }

    pub fn recent_blockhash(&self) -> &[u8; 32] {
        &self.recent_blockhash
    }

    pub fn instructions(&self) -> &[CompiledInstruction] {
        &self.instructions
    }

    pub fn address_table_lookups(&self) -> &[AddressTableLookup] {
        &self.address_table_lookups
    }

    /// Account 0, which pays the fee; sanitizing guarantees it exists and is a writable signer.
    pub fn fee_payer(&self) -> &Pubkey {
        &self.account_keys[0]
    }

    /// The keys that must sign, in signature order.
    pub fn signer_keys(&self) -> &[Pubkey] {
        &self.account_keys[..self.num_signers()]
    }

    pub fn num_signers(&self) -> usize {
        usize::from(self.header.num_required_signatures)
    }

    /// A static account key; `None` for loaded (lookup-table) indexes and out-of-range ones.
    pub fn account_key(&self, index: usize) -> Option<&Pubkey> {
        self.account_keys.get(index)
    }

    /// Static keys plus every account the lookup tables load.
    pub fn total_account_count(&self) -> usize {
        self.account_keys.len() + self.loaded_writable_count() + self.loaded_readonly_count()
    }

    pub fn uses_lookup_tables(&self) -> bool {
        !self.address_table_lookups.is_empty()
    }

    pub fn is_signer(&self, index: usize) -> bool {
        index < self.num_signers()
    }

    /// Solana's writability: the header's four regions for static keys (writable signers,
    /// read-only signers, writable and read-only non-signers), the tables' writable indexes for
    /// loaded ones; and an invoked program is demoted to read-only unless the upgradeable loader
    /// is present. Not applied: the runtime's reserved-account demotion (sysvars and builtin
    /// programs named as plain accounts), and a loader that only a lookup table loads.
    pub fn is_writable(&self, index: usize) -> bool {
        self.is_writable_by_position(index) && !self.is_demoted_program(index)
    }

    fn is_writable_by_position(&self, index: usize) -> bool {
        let header = &self.header;
        let signers = self.num_signers();
        let statics = self.account_keys.len();
        if index < statics {
            let writable_signers = signers - usize::from(header.num_readonly_signed_accounts);
            let writable_unsigned_end =
                statics - usize::from(header.num_readonly_unsigned_accounts);
            index < writable_signers || (index >= signers && index < writable_unsigned_end)
        } else {
            index - statics < self.loaded_writable_count()
        }
    }

    fn is_demoted_program(&self, index: usize) -> bool {
        let called = self
            .instructions
            .iter()
            .any(|ix| usize::from(ix.program_id_index) == index);
        called && !self.account_keys.contains(&BPF_LOADER_UPGRADEABLE)
    }

    fn loaded_writable_count(&self) -> usize {
        let lookups = self.address_table_lookups.iter();
        lookups.map(|l| l.writable_indexes.len()).sum()
    }

    fn loaded_readonly_count(&self) -> usize {
        let lookups = self.address_table_lookups.iter();
        lookups.map(|l| l.readonly_indexes.len()).sum()
    }
}

/// Lengths the compact-u16 encoding can carry (account keys are bounded by sanitize).
fn check_encodable(
    instructions: &[CompiledInstruction],
    lookups: &[AddressTableLookup],
) -> Result<(), WireError> {
    let too_long = |what, len: usize| {
        if len > usize::from(u16::MAX) {
            Err(WireError::TooLong { what, len })
        } else {
            Ok(())
        }
    };
    too_long("instructions", instructions.len())?;
    for ix in instructions {
        too_long("instruction accounts", ix.accounts.len())?;
        too_long("instruction data", ix.data.len())?;
    }
    too_long("address table lookups", lookups.len())?;
    for lookup in lookups {
        too_long("writable indexes", lookup.writable_indexes.len())?;
        too_long("readonly indexes", lookup.readonly_indexes.len())?;
    }
    Ok(())
}

/// A transaction: one signature per required signer, then the message they sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedTransaction {
    signatures: Vec<[u8; 64]>,
    message: Message,
}

impl VersionedTransaction {
    /// The signature count must equal the message's required signers.
    pub fn new(message: Message, signatures: Vec<[u8; 64]>) -> Result<Self, WireError> {
        if signatures.len() != message.num_signers() {
            return Err(WireError::SignatureCount {
                signatures: signatures.len(),
                required: message.num_signers(),
            });
        }
        Ok(Self {
            signatures,
            message,
        })
    }

    /// Every signature slot zeroed, as a client leaves the fee payer's (digest §5.1).
    pub fn unsigned(message: Message) -> Self {
        let signatures = vec![[0u8; 64]; message.num_signers()];
        Self {
            signatures,
            message,
        }
    }

    /// Decodes exactly one transaction of at most [`PACKET_DATA_SIZE`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > PACKET_DATA_SIZE {
            return Err(WireError::TooLarge(bytes.len()));
        }
        let mut reader = Reader::new(bytes);
        let signatures = reader.vec(|r| r.array::<64>())?;
        let message = Message::read(&mut reader)?;
        reader.finish()?;
        Self::new(message, signatures)
    }

    /// The payload's `transaction` field: standard, padded base64 of the wire bytes.
    pub fn from_base64(text: &str) -> Result<Self, WireError> {
        // Four characters per three bytes: a longer text cannot hold a valid transaction.
        if text.len() > PACKET_DATA_SIZE.div_ceil(3) * 4 {
            return Err(WireError::TooLarge(text.len() / 4 * 3));
        }
        Self::decode(&base64::decode(text)?)
    }

    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PACKET_DATA_SIZE);
        put_len(&mut out, self.signatures.len());
        for signature in &self.signatures {
            out.extend_from_slice(signature);
        }
        out.extend_from_slice(&self.message.serialize());
        out
    }

    pub fn to_base64(&self) -> String {
        base64::encode(&self.serialize())
    }

    pub fn message(&self) -> &Message {
        &self.message
    }

    /// What the signatures sign.
    pub fn message_bytes(&self) -> Vec<u8> {
        self.message.serialize()
    }

    pub fn signatures(&self) -> &[[u8; 64]] {
        &self.signatures
    }

    /// The transaction id Solana reports: the fee payer's signature, in base58.
    pub fn transaction_id(&self) -> String {
        bs58::encode(self.signatures[0]).into_string()
    }

    /// Puts `signature` in the slot of signer `index`.
    pub fn set_signature(&mut self, index: usize, signature: [u8; 64]) -> Result<(), WireError> {
        let signers = self.signatures.len();
        let slot = self
            .signatures
            .get_mut(index)
            .ok_or(WireError::NotASignerIndex { index, signers })?;
        *slot = signature;
        Ok(())
    }

    /// Signs the message with `keypair` in its signer slot; returns the slot.
    pub fn sign(&mut self, keypair: &Keypair) -> Result<usize, WireError> {
        let pubkey = keypair.pubkey();
        let index = self
            .message
            .signer_keys()
            .iter()
            .position(|key| *key == pubkey)
            .ok_or(WireError::NotASigner(pubkey))?;
        let signature = keypair.sign(&self.message_bytes());
        self.set_signature(index, signature)?;
        Ok(index)
    }

    /// Whether signer `index`'s signature verifies over the message; false out of range.
    pub fn signature_verifies(&self, index: usize) -> bool {
        match (
            self.message.signer_keys().get(index),
            self.signatures.get(index),
        ) {
            (Some(key), Some(signature)) => keys::verify(key, &self.message_bytes(), signature),
            _ => false,
        }
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Message::new and decoding bound every length by u16::MAX (check_encodable, sanitize).
    let len = u16::try_from(len).expect("lengths are bounded by construction");
    encode_compact_u16(len, out);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A cursor that never reads out of bounds: every read returns `Truncated` instead.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn peek(&self) -> Result<u8, WireError> {
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or(WireError::Truncated { offset: self.pos })
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        let byte = self.peek()?;
        self.pos += 1;
        Ok(byte)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or(WireError::Truncated {
            offset: self.bytes.len(),
        })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Solana's `short_vec` decoding, byte by byte (see [`decode_compact_u16`]).
    fn compact_len(&mut self) -> Result<usize, WireError> {
        let offset = self.pos;
        let mut value: u32 = 0;
        for nth in 0..3u32 {
            let byte = self.u8()?;
            if byte == 0 && nth > 0 {
                return Err(WireError::NonCanonicalLength { offset });
            }
            let more = byte & 0x80 != 0;
            if more && nth == 2 {
                return Err(WireError::LengthOverflow { offset });
            }
            value |= u32::from(byte & 0x7f) << (7 * nth);
            if value > u32::from(u16::MAX) {
                return Err(WireError::LengthOverflow { offset });
            }
            if !more {
                return Ok(value as usize);
            }
        }
        Err(WireError::LengthOverflow { offset })
    }

    /// A compact-u16 length, then that many bytes.
    fn bytes(&mut self) -> Result<Vec<u8>, WireError> {
        let len = self.compact_len()?;
        Ok(self.take(len)?.to_vec())
    }

    /// A compact-u16 count, then that many items. The count is not trusted for allocation.
    fn vec<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let count = self.compact_len()?;
        let mut items = Vec::with_capacity(count.min(self.bytes.len() - self.pos));
        for _ in 0..count {
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn finish(self) -> Result<(), WireError> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes(extra)),
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4), strict: the encoding of any byte string is unique,
/// so a decoded payload re-encodes to the same text.
mod base64 {
    use super::WireError;

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn sextet(c: u8) -> Option<u32> {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(value))
    }

    pub fn decode(text: &str) -> Result<Vec<u8>, WireError> {
        let text = text.as_bytes();
        if !text.len().is_multiple_of(4) {
            return Err(WireError::Base64("length is not a multiple of 4"));
        }
        let mut out = Vec::with_capacity(text.len() / 4 * 3);
        let quads = text.chunks(4);
        let last = quads.len().saturating_sub(1);
        for (index, quad) in quads.enumerate() {
            let padding = quad.iter().rev().take_while(|&&c| c == b'=').count();
            if padding > 2 || (padding > 0 && index != last) {
                return Err(WireError::Base64("misplaced padding"));
            }
            let mut n = 0u32;
            for &c in &quad[..4 - padding] {
                let value = sextet(c).ok_or(WireError::Base64("invalid character"))?;
                n = n << 6 | value;
            }
            n <<= 6 * padding;
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            let kept = 3 - padding;
            if bytes[kept..].iter().any(|&b| b != 0) {
                return Err(WireError::Base64("non-zero bits after the last byte"));
            }
            out.extend_from_slice(&bytes[..kept]);
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
}
