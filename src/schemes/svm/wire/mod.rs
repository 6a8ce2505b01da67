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

mod base64;

#[cfg(test)]
pub(crate) mod tests;
