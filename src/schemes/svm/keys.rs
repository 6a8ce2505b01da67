//! Solana keys without the Solana SDK: the 32-byte [`Pubkey`] in base58, the program ids the exact
//! scheme knows (digest §5.1), program-derived addresses and associated token accounts, the
//! ed25519 [`Keypair`] a fee payer signs with, and signature verification.

use std::fmt;
use std::str::FromStr;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The longest base58 text of 32 bytes; anything longer is rejected before decoding (base58
/// decoding is quadratic, and Solana's `Pubkey::from_str` has the same guard).
const MAX_BASE58_LEN: usize = 44;
/// Solana's limits for `create_program_address`: seeds including the bump, and bytes per seed.
pub const MAX_SEEDS: usize = 16;
pub const MAX_SEED_LEN: usize = 32;
const PDA_MARKER: &[u8] = b"ProgramDerivedAddress";

/// Why a key did not parse or derive. Messages never contain secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("public key is not base58")]
    NotBase58,
    #[error("public key text is {0} characters; at most 44 encode 32 bytes")]
    TooLong(usize),
    #[error("public key is {0} bytes; expected 32")]
    WrongLength(usize),
    #[error("keypair is not base58")]
    KeypairNotBase58,
    #[error("keypair is not a JSON array of numbers 0-255")]
    KeypairNotJson,
    #[error("keypair is {0} bytes; expected 64 (secret key then public key)")]
    KeypairWrongLength(usize),
    #[error("keypair's public half does not belong to its secret half")]
    KeypairMismatch,
    #[error("{0} seeds; at most 15 fit beside the bump seed")]
    TooManySeeds(usize),
    #[error("seed {index} is {len} bytes; at most 32")]
    SeedTooLong { index: usize, len: usize },
    #[error("the derived address lies on the ed25519 curve")]
    OnCurve,
    #[error("no bump seed gives an address off the ed25519 curve")]
    NoViableBump,
}

/// A Solana account address: 32 bytes, shown in base58.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Pubkey(pub [u8; 32]);

impl Pubkey {
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A compile-time constant from base58; a bad literal fails the build.
    const fn from_base58_const(text: &str) -> Self {
        Self(bs58::decode(text.as_bytes()).into_array_const_unwrap::<32>())
    }

    /// Whether the bytes decompress to an ed25519 point, i.e. whether a private key could exist.
    /// Program-derived addresses are exactly the addresses for which this is false.
    pub fn is_on_curve(&self) -> bool {
        CompressedEdwardsY(self.0).decompress().is_some()
    }
}

impl FromStr for Pubkey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        if text.len() > MAX_BASE58_LEN {
            return Err(KeyError::TooLong(text.len()));
        }
        let bytes = bs58::decode(text)
            .into_vec()
            .map_err(|_| KeyError::NotBase58)?;
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength(bytes.len()))?;
        Ok(Self(array))
    }
}

impl TryFrom<&[u8]> for Pubkey {
    type Error = KeyError;

    fn try_from(bytes: &[u8]) -> Result<Self, KeyError> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| KeyError::WrongLength(bytes.len()))
    }
}

impl From<[u8; 32]> for Pubkey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for Pubkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for Pubkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pubkey({self})")
    }
}

impl Serialize for Pubkey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pubkey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Program ids (digest §5.1, §5.5).
pub const SYSTEM_PROGRAM: Pubkey = Pubkey::from_base58_const("11111111111111111111111111111111");
pub const TOKEN_PROGRAM: Pubkey =
    Pubkey::from_base58_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
pub const TOKEN_2022_PROGRAM: Pubkey =
    Pubkey::from_base58_const("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
pub const ASSOCIATED_TOKEN_PROGRAM: Pubkey =
    Pubkey::from_base58_const("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL");
pub const COMPUTE_BUDGET_PROGRAM: Pubkey =
    Pubkey::from_base58_const("ComputeBudget111111111111111111111111111111");
pub const MEMO_PROGRAM: Pubkey =
    Pubkey::from_base58_const("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");
pub const LIGHTHOUSE_PROGRAM: Pubkey =
    Pubkey::from_base58_const("L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95");
/// The upgradeable BPF loader: its presence in a message keeps invoked program ids writable
/// (see `wire::Message::is_writable`).
pub const BPF_LOADER_UPGRADEABLE: Pubkey =
    Pubkey::from_base58_const("BPFLoaderUpgradeab1e11111111111111111111111");

/// `sha256(seeds ‖ program_id ‖ "ProgramDerivedAddress")`, rejected if it is a curve point;
/// Solana's `create_program_address`, with its seed limits.
pub fn create_program_address(seeds: &[&[u8]], program_id: &Pubkey) -> Result<Pubkey, KeyError> {
    if seeds.len() > MAX_SEEDS {
        return Err(KeyError::TooManySeeds(seeds.len()));
    }
    if let Some((index, seed)) = seeds
        .iter()
        .enumerate()
        .find(|(_, s)| s.len() > MAX_SEED_LEN)
    {
        return Err(KeyError::SeedTooLong {
            index,
            len: seed.len(),
        });
    }
    let mut hasher = Sha256::new();
    for seed in seeds {
        hasher.update(seed);
    }
    hasher.update(program_id.0);
    hasher.update(PDA_MARKER);
    let address = Pubkey(hasher.finalize().into());
    if address.is_on_curve() {
        return Err(KeyError::OnCurve);
    }
    Ok(address)
}

/// Solana's `find_program_address`: the first bump from 255 down whose address is off the curve.
/// Solana panics where this returns `NoViableBump` (odds about 2^-256 for valid seeds).
pub fn find_program_address(
    seeds: &[&[u8]],
    program_id: &Pubkey,
) -> Result<(Pubkey, u8), KeyError> {
    // The bump is one more seed, so the caller gets one fewer than Solana's limit.
    if seeds.len() >= MAX_SEEDS {
        return Err(KeyError::TooManySeeds(seeds.len()));
    }
    for bump in (0..=u8::MAX).rev() {
        let bump_seed = [bump];
        let mut with_bump: Vec<&[u8]> = Vec::with_capacity(seeds.len() + 1);
        with_bump.extend_from_slice(seeds);
        with_bump.push(&bump_seed);
        match create_program_address(&with_bump, program_id) {
            Ok(address) => return Ok((address, bump)),
            Err(KeyError::OnCurve) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(KeyError::NoViableBump)
}

/// The associated token account of `owner` for `mint` under `token_program` (Token or
/// Token-2022): seeds `[owner, token_program, mint]` under the ATA program (digest §5.1).
pub fn associated_token_address(owner: &Pubkey, mint: &Pubkey, token_program: &Pubkey) -> Pubkey {
    let seeds: [&[u8]; 3] = [&owner.0, &token_program.0, &mint.0];
    let (address, _bump) = find_program_address(&seeds, &ASSOCIATED_TOKEN_PROGRAM)
        // Three 32-byte seeds are within the limits, and every one of 256 bumps landing on the
        // curve (each about a coin flip, via SHA-256) is the 2^-256 case Solana also panics on.
        .expect("three 32-byte seeds always have a viable bump");
    address
}

/// An ed25519 keypair as Solana wallets store it. Debug shows only the public key.
pub struct Keypair(SigningKey);

impl Keypair {
    /// The 64 bytes `secret ‖ public`; the public half must match the secret.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let array: &[u8; 64] = bytes
            .try_into()
            .map_err(|_| KeyError::KeypairWrongLength(bytes.len()))?;
        SigningKey::from_keypair_bytes(array)
            .map(Self)
            .map_err(|_| KeyError::KeypairMismatch)
    }

    /// From the 32-byte secret seed alone.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// Base58 of the 64 bytes `secret ‖ public` (what Phantom and `solana-keygen` export).
    pub fn from_base58(text: &str) -> Result<Self, KeyError> {
        let bytes = bs58::decode(text.trim())
            .into_vec()
            .map_err(|_| KeyError::KeypairNotBase58)?;
        Self::from_bytes(&bytes)
    }

    /// A JSON array of 64 numbers: the `solana-keygen` key file.
    pub fn from_json(text: &str) -> Result<Self, KeyError> {
        // The serde error is dropped: it can quote a value from the secret.
        let bytes: Vec<u8> = serde_json::from_str(text).map_err(|_| KeyError::KeypairNotJson)?;
        Self::from_bytes(&bytes)
    }

    /// Either format: a JSON array if the text starts with `[`, base58 otherwise.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.trim_start().starts_with('[') {
            Self::from_json(text)
        } else {
            Self::from_base58(text)
        }
    }

    pub fn pubkey(&self) -> Pubkey {
        Pubkey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("pubkey", &self.pubkey())
            .finish_non_exhaustive()
    }
}

/// Whether `signature` is `pubkey`'s ed25519 signature of `message`. Strict verification (no
/// small-order keys, canonical `S`), as Solana's `Signature::verify` does.
pub fn verify(pubkey: &Pubkey, message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&pubkey.0) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(signature))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(text: &str) -> Pubkey {
        text.parse().expect("test vector is a valid pubkey")
    }

    #[test]
    fn program_id_constants_round_trip_their_base58() {
        for (constant, text) in [
            (SYSTEM_PROGRAM, "11111111111111111111111111111111"),
            (TOKEN_PROGRAM, "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"),
            (
                TOKEN_2022_PROGRAM,
                "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
            ),
            (
                ASSOCIATED_TOKEN_PROGRAM,
                "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL",
            ),
            (
                COMPUTE_BUDGET_PROGRAM,
                "ComputeBudget111111111111111111111111111111",
            ),
            (MEMO_PROGRAM, "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"),
            (
                LIGHTHOUSE_PROGRAM,
                "L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95",
            ),
            (
                BPF_LOADER_UPGRADEABLE,
                "BPFLoaderUpgradeab1e11111111111111111111111",
            ),
        ] {
            assert_eq!(constant.to_string(), text);
            assert_eq!(pk(text), constant);
        }
        assert_eq!(SYSTEM_PROGRAM.0, [0u8; 32]);
    }

    #[test]
    fn pubkey_parse_rejects_wrong_lengths_and_alphabet() {
        // 31 bytes (one '1' short of the system program) and 33 bytes.
        assert_eq!(
            "1111111111111111111111111111111".parse::<Pubkey>(),
            Err(KeyError::WrongLength(31))
        );
        assert_eq!(
            "111111111111111111111111111111111".parse::<Pubkey>(),
            Err(KeyError::WrongLength(33))
        );
        assert_eq!("".parse::<Pubkey>(), Err(KeyError::WrongLength(0)));
        // 0, O, I and l are not in the base58 alphabet.
        for bad in [
            "0okenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
            "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DO",
            "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DI",
            "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5Dl",
            "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5D ",
            "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DÄ",
        ] {
            assert!(bad.parse::<Pubkey>().is_err(), "{bad}");
        }
        assert_eq!("1".repeat(45).parse::<Pubkey>(), Err(KeyError::TooLong(45)));
        // 44 characters that decode to more than 32 bytes.
        assert_eq!(
            "z".repeat(44).parse::<Pubkey>(),
            Err(KeyError::WrongLength(33))
        );
    }

    #[test]
    fn pubkey_from_slice_and_serde() {
        assert_eq!(Pubkey::try_from(&[7u8; 32][..]), Ok(Pubkey([7; 32])));
        assert_eq!(
            Pubkey::try_from(&[7u8; 31][..]),
            Err(KeyError::WrongLength(31))
        );
        let json = serde_json::to_string(&TOKEN_PROGRAM).expect("serializes");
        assert_eq!(json, "\"TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA\"");
        let back: Pubkey = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, TOKEN_PROGRAM);
        assert!(serde_json::from_str::<Pubkey>("\"abc\"").is_err());
        assert_eq!(
            format!("{TOKEN_PROGRAM:?}"),
            "Pubkey(TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA)"
        );
    }

    // Expected ATAs computed in a Node scratch directory with `findAssociatedTokenPda({ owner,
    // mint, tokenProgram })` from @solana-program/token 0.16.1 on @solana/kit 8.4.0 (the versions
    // pinned in tests/solana-chain), for mainnet USDC (Token) and PYUSD (Token-2022).
    #[test]
    fn associated_token_addresses_match_solana_kit() {
        let wallet = pk("9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM");
        let usdc = pk("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v");
        let pyusd = pk("2b1kV6DkPAnxd5ixfnxCpjxmKwqjjaYmCZfHsFu24GXo");
        assert_eq!(
            associated_token_address(&wallet, &usdc, &TOKEN_PROGRAM),
            pk("FGETo8T8wMcN2wCjav8VK6eh3dLk63evNDPxzLSJra8B")
        );
        assert_eq!(
            associated_token_address(&wallet, &pyusd, &TOKEN_2022_PROGRAM),
            pk("897krAvWH3RbymaCYE3o9emopUwocieHuKTUk9nySpq6")
        );
        let seeds: [&[u8]; 3] = [&wallet.0, &TOKEN_PROGRAM.0, &usdc.0];
        let (_, bump) = find_program_address(&seeds, &ASSOCIATED_TOKEN_PROGRAM).expect("derives");
        assert_eq!(bump, 254);
        // The token program is part of the seeds: the same mint under the other program differs.
        assert_ne!(
            associated_token_address(&wallet, &usdc, &TOKEN_2022_PROGRAM),
            associated_token_address(&wallet, &usdc, &TOKEN_PROGRAM)
        );
    }

    // Expected values from @solana/kit 8.4.0 `getProgramDerivedAddress` under the Memo program.
    #[test]
    fn program_derived_addresses_match_solana_kit() {
        for (seed, expected, expected_bump) in [
            (
                "x402-0",
                "AezgxBMTc5W36PoGKpgKkEoKwCv3xwGoajbN3Fp5U8xC",
                255,
            ),
            (
                "x402-2",
                "8m8ZYGf98kQHBYem9eqoDyAWWdULwk5rdx5UZBkkBv3p",
                251,
            ),
            (
                "x402-3",
                "7w1nEX8SjUvnAGu7Cv8HB986Rz8BkBTtmpGsQzuXeAc7",
                251,
            ),
        ] {
            let (address, bump) =
                find_program_address(&[seed.as_bytes()], &MEMO_PROGRAM).expect("derives");
            assert_eq!((address, bump), (pk(expected), expected_bump), "{seed}");
            assert!(!address.is_on_curve());
            // Bumps above the found one land on the curve.
            for higher in (bump..=u8::MAX).skip(1) {
                assert_eq!(
                    create_program_address(&[seed.as_bytes(), &[higher]], &MEMO_PROGRAM),
                    Err(KeyError::OnCurve)
                );
            }
        }
        assert_eq!(
            find_program_address(&[], &MEMO_PROGRAM),
            Ok((pk("94mqhNntKGsB8F2mXVSWmhV6sTiMycXrRmu3efoLfAGD"), 254))
        );
    }

    #[test]
    fn program_address_seed_limits() {
        let long = [0u8; 33];
        assert_eq!(
            find_program_address(&[b"ok", &long], &MEMO_PROGRAM),
            Err(KeyError::SeedTooLong { index: 1, len: 33 })
        );
        let fifteen: Vec<&[u8]> = vec![b"s"; 15];
        assert!(find_program_address(&fifteen, &MEMO_PROGRAM).is_ok());
        let sixteen: Vec<&[u8]> = vec![b"s"; 16];
        assert_eq!(
            find_program_address(&sixteen, &MEMO_PROGRAM),
            Err(KeyError::TooManySeeds(16))
        );
        let seventeen: Vec<&[u8]> = vec![b"s"; 17];
        assert_eq!(
            create_program_address(&seventeen, &MEMO_PROGRAM),
            Err(KeyError::TooManySeeds(17))
        );
    }

    #[test]
    fn curve_check() {
        // A real wallet key is a curve point; the system program id (all zeros, y = 0) is too.
        assert!(pk("9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM").is_on_curve());
        assert!(Keypair::from_seed(&[9; 32]).pubkey().is_on_curve());
        assert!(!pk("FGETo8T8wMcN2wCjav8VK6eh3dLk63evNDPxzLSJra8B").is_on_curve());
    }

    // Secret seed [1; 32]; public key, base58 export and signature from @solana/kit 8.4.0
    // (`createKeyPairFromPrivateKeyBytes`, `signBytes`).
    const SEED_ONE_PUBKEY: &str = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9";
    const SEED_ONE_BASE58: &str =
        "2AXDGYSE4f2sz7tvMMzyHvUfcoJmxudvdhBcmiUSo6iuCXagjUCKEQF21awZnUGxmwD4m9vGXuC3qieHXJQHAcT";
    const SEED_ONE_SIGNATURE: &str = "d4408236382b2fcec9ef82f4b466b4927e2a78dc16d9d09ffadace2bb854dbe76aaed79e5b7e8fa55738a5dddf59e6edc87472df234794615d59e95d1c74c701";

    fn hex64(text: &str) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }

    fn keygen_json(keypair_bytes: &[u8]) -> String {
        let numbers: Vec<String> = keypair_bytes.iter().map(u8::to_string).collect();
        format!("[{}]", numbers.join(","))
    }

    #[test]
    fn keypair_formats_agree_with_solana_kit() {
        let from_seed = Keypair::from_seed(&[1; 32]);
        assert_eq!(from_seed.pubkey(), pk(SEED_ONE_PUBKEY));
        let from_base58 = Keypair::from_base58(SEED_ONE_BASE58).expect("parses");
        assert_eq!(from_base58.pubkey(), pk(SEED_ONE_PUBKEY));
        let mut bytes = vec![1u8; 32];
        bytes.extend_from_slice(&pk(SEED_ONE_PUBKEY).0);
        let from_json = Keypair::from_json(&keygen_json(&bytes)).expect("parses");
        assert_eq!(from_json.pubkey(), pk(SEED_ONE_PUBKEY));
        // `parse` picks the format; whitespace and newlines as in a key file are fine.
        let pretty = format!("\n  {}\n", keygen_json(&bytes).replace(',', ", "));
        assert_eq!(
            Keypair::parse(&pretty).expect("json").pubkey(),
            pk(SEED_ONE_PUBKEY)
        );
        assert_eq!(
            Keypair::parse(&format!("{SEED_ONE_BASE58}\n"))
                .expect("base58")
                .pubkey(),
            pk(SEED_ONE_PUBKEY)
        );

        let message = b"x402 keypair vector";
        let signature = from_json.sign(message);
        assert_eq!(signature, hex64(SEED_ONE_SIGNATURE));
        assert!(verify(&from_json.pubkey(), message, &signature));
        assert!(!verify(
            &from_json.pubkey(),
            b"x402 keypair vectoR",
            &signature
        ));
        let mut tampered = signature;
        tampered[10] ^= 1;
        assert!(!verify(&from_json.pubkey(), message, &tampered));
        assert!(!verify(
            &Keypair::from_seed(&[2; 32]).pubkey(),
            message,
            &signature
        ));
        // Bytes that are not a curve point are not a key at all.
        assert!(!verify(
            &pk("FGETo8T8wMcN2wCjav8VK6eh3dLk63evNDPxzLSJra8B"),
            message,
            &signature
        ));
    }

    #[test]
    fn keypair_rejections() {
        let mut bytes = vec![1u8; 32];
        bytes.extend_from_slice(&pk(SEED_ONE_PUBKEY).0);
        // Wrong public half.
        let mut mismatched = bytes.clone();
        mismatched[40] ^= 1;
        assert!(matches!(
            Keypair::from_bytes(&mismatched),
            Err(KeyError::KeypairMismatch)
        ));
        assert!(matches!(
            Keypair::from_bytes(&bytes[..32]),
            Err(KeyError::KeypairWrongLength(32))
        ));
        assert!(matches!(
            Keypair::from_json(&keygen_json(&bytes[..63])),
            Err(KeyError::KeypairWrongLength(63))
        ));
        for bad_json in ["[1,2,256]", "[-1]", "[1.5]", "{\"a\":1}", "[1,2", "\"abc\""] {
            assert!(
                matches!(Keypair::from_json(bad_json), Err(KeyError::KeypairNotJson)),
                "{bad_json}"
            );
        }
        assert!(matches!(
            Keypair::from_base58("0OIl"),
            Err(KeyError::KeypairNotBase58)
        ));
        assert!(matches!(
            Keypair::from_base58(SEED_ONE_PUBKEY),
            Err(KeyError::KeypairWrongLength(32))
        ));
        // Errors never echo the input.
        let err = Keypair::from_json("[1,2,300]").expect_err("rejects");
        assert!(!err.to_string().contains("300"));
    }

    #[test]
    fn keypair_debug_hides_the_secret() {
        let keypair = Keypair::from_base58(SEED_ONE_BASE58).expect("parses");
        let shown = format!("{keypair:?}");
        assert_eq!(
            shown,
            format!("Keypair {{ pubkey: Pubkey({SEED_ONE_PUBKEY}), .. }}")
        );
        assert!(!shown.contains(SEED_ONE_BASE58));
    }
}
