//! Keys, on the official crates: the program ids the exact scheme knows (digest §5.1, §5.5, from
//! the interface crates that own them), associated token accounts, the fee payer's keypair as
//! operators configure it, and strict signature verification.

use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signature::Signature;

pub use solana_compute_budget_interface::ID as COMPUTE_BUDGET_PROGRAM;
pub use spl_associated_token_account_interface::program::ID as ASSOCIATED_TOKEN_PROGRAM;
pub use spl_memo_interface::v3::ID as MEMO_PROGRAM;
pub use spl_token_2022_interface::ID as TOKEN_2022_PROGRAM;
pub use spl_token_interface::ID as TOKEN_PROGRAM;

/// Lighthouse (the guard program wallets inject, digest §5.5); no interface crate on this line
/// (its Rust SDK is on `solana-program` 1.x), so the id is written here.
pub const LIGHTHOUSE_PROGRAM: Pubkey =
    Pubkey::from_str_const("L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95");
pub const SYSTEM_PROGRAM: Pubkey = Pubkey::from_str_const("11111111111111111111111111111111");

/// Why a configured key did not load. Messages never contain secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("keypair is not base58")]
    NotBase58,
    #[error("keypair is not a JSON array of numbers 0-255")]
    NotJson,
    #[error("keypair is {0} bytes; expected 64 (secret key then public key)")]
    WrongLength(usize),
    #[error("keypair's public half does not belong to its secret half")]
    Mismatch,
}

/// The 64 bytes `secret ‖ public`; the public half must match the secret.
fn from_bytes(bytes: &[u8]) -> Result<Keypair, KeyError> {
    if bytes.len() != 64 {
        return Err(KeyError::WrongLength(bytes.len()));
    }
    Keypair::try_from(bytes).map_err(|_| KeyError::Mismatch)
}

/// A fee payer key as `solana-keygen` writes it (a JSON array of 64 numbers) or as wallets
/// export it (base58 of the same 64 bytes). The error never quotes the input.
pub fn parse_keypair(text: &str) -> Result<Keypair, KeyError> {
    let text = text.trim();
    let bytes: Vec<u8> = if text.starts_with('[') {
        serde_json::from_str(text).map_err(|_| KeyError::NotJson)?
    } else {
        bs58::decode(text)
            .into_vec()
            .map_err(|_| KeyError::NotBase58)?
    };
    from_bytes(&bytes)
}

/// The associated token account of `owner` for `mint` under `token_program` (digest §5.1).
pub fn associated_token_address(owner: &Pubkey, mint: &Pubkey, token_program: &Pubkey) -> Pubkey {
    spl_associated_token_account_interface::address::get_associated_token_address_with_program_id(
        owner,
        mint,
        token_program,
    )
}

/// Whether `signature` is `pubkey`'s signature of `message`: `solana-signature`'s `verify`,
/// which on this line is ed25519-dalek's `verify_strict` (no small-order keys, canonical `S`),
/// as strict as the runtime today.
pub fn verify(pubkey: &Pubkey, message: &[u8], signature: &Signature) -> bool {
    signature.verify(pubkey.as_ref(), message)
}

#[cfg(test)]
mod tests {
    use solana_signer::Signer;

    use super::*;

    fn pk(text: &str) -> Pubkey {
        text.parse().expect("test vector is a valid pubkey")
    }

    #[test]
    fn program_ids_are_the_ones_the_digest_names() {
        for (id, text) in [
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
        ] {
            assert_eq!(id.to_string(), text);
        }
    }

    #[test]
    fn pubkey_parsing_is_strict() {
        for bad in [
            "1111111111111111111111111111111",
            "111111111111111111111111111111111",
            "",
            "0okenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
            "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5Dl",
            "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5D ",
        ] {
            assert!(bad.parse::<Pubkey>().is_err(), "{bad:?}");
        }
        assert!("1".repeat(45).parse::<Pubkey>().is_err());
        assert!("z".repeat(44).parse::<Pubkey>().is_err());
    }

    // Expected ATAs computed with @solana-program/token 0.16.1 `findAssociatedTokenPda` on
    // @solana/kit 8.4.0 (the versions pinned in tests/solana-chain), for mainnet USDC (Token)
    // and PYUSD (Token-2022).
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
        assert_ne!(
            associated_token_address(&wallet, &usdc, &TOKEN_2022_PROGRAM),
            associated_token_address(&wallet, &usdc, &TOKEN_PROGRAM)
        );
        assert!(!pk("FGETo8T8wMcN2wCjav8VK6eh3dLk63evNDPxzLSJra8B").is_on_curve());
        assert!(wallet.is_on_curve());
    }

    // Secret seed [1; 32]; public key, base58 export and signature from @solana/kit 8.4.0.
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

    fn keygen_json(bytes: &[u8]) -> String {
        let numbers: Vec<String> = bytes.iter().map(u8::to_string).collect();
        format!("[{}]", numbers.join(","))
    }

    #[test]
    fn keypair_formats_agree_with_solana_kit() {
        let from_base58 = parse_keypair(&format!("{SEED_ONE_BASE58}\n")).expect("base58");
        assert_eq!(from_base58.pubkey(), pk(SEED_ONE_PUBKEY));
        let mut bytes = vec![1u8; 32];
        bytes.extend_from_slice(pk(SEED_ONE_PUBKEY).as_ref());
        let pretty = format!("\n  {}\n", keygen_json(&bytes).replace(',', ", "));
        let from_json = parse_keypair(&pretty).expect("json");
        assert_eq!(from_json.pubkey(), pk(SEED_ONE_PUBKEY));

        let message = b"x402 keypair vector";
        let signature = from_json.sign_message(message);
        assert_eq!(signature.as_ref(), hex64(SEED_ONE_SIGNATURE));
        assert!(verify(&from_json.pubkey(), message, &signature));
        assert!(!verify(
            &from_json.pubkey(),
            b"x402 keypair vectoR",
            &signature
        ));
        let mut tampered = hex64(SEED_ONE_SIGNATURE);
        tampered[10] ^= 1;
        assert!(!verify(
            &from_json.pubkey(),
            message,
            &Signature::from(tampered)
        ));
        // Bytes that are no curve point are no key at all.
        assert!(!verify(
            &pk("FGETo8T8wMcN2wCjav8VK6eh3dLk63evNDPxzLSJra8B"),
            message,
            &signature
        ));
    }

    #[test]
    fn keypair_rejections_never_echo_the_input() {
        let mut bytes = vec![1u8; 32];
        bytes.extend_from_slice(pk(SEED_ONE_PUBKEY).as_ref());
        let mut mismatched = bytes.clone();
        mismatched[40] ^= 1;
        assert_eq!(
            parse_keypair(&keygen_json(&mismatched)).err(),
            Some(KeyError::Mismatch)
        );
        assert_eq!(
            parse_keypair(&keygen_json(&bytes[..63])).err(),
            Some(KeyError::WrongLength(63))
        );
        for bad_json in ["[1,2,256]", "[-1]", "[1.5]", "[1,2"] {
            assert_eq!(parse_keypair(bad_json).err(), Some(KeyError::NotJson));
        }
        assert_eq!(parse_keypair("0OIl").err(), Some(KeyError::NotBase58));
        assert_eq!(
            parse_keypair(SEED_ONE_PUBKEY).err(),
            Some(KeyError::WrongLength(32))
        );
        let err = parse_keypair("[1,2,300]").expect_err("rejects");
        assert!(!err.to_string().contains("300"));
    }
}
