//! The signature of a sign-in proof over its rebuilt text, routed by the chain id's namespace:
//! `eip155:` → EIP-191 personal-sign hash, checked by ecrecover (EOA) locally or by the served
//! network's plugin when the signer may be a contract (ERC-1271, ERC-6492); `solana:` → Ed25519
//! over the text's UTF-8 bytes.

use alloy::primitives::{eip191_hash_message, hex};

use super::proof::{Proof, Refusal, refuse};
use super::reason;
use crate::facilitator::Facilitator;
use crate::scheme::{Deadline, SchemeError};
use crate::schemes::evm::{payload::parse_address, signature::recover};

/// The chain a proof names, parsed from its CAIP-2 id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofChain<'a> {
    Evm(u64),
    /// The reference after `solana:` (the genesis hash prefix).
    Solana(&'a str),
}

pub fn chain_of(chain_id: &str) -> Result<ProofChain<'_>, Refusal> {
    if let Some(n) = chain_id.strip_prefix("eip155:") {
        // Decimal digits only (`parseInt` in the client also drops leading zeros).
        return n
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| n.parse::<u64>().ok())
            .flatten()
            .map(ProofChain::Evm)
            .ok_or_else(|| {
                refuse(
                    reason::CHAIN_ID,
                    format!("Invalid EVM chainId format: {chain_id}. Expected eip155:<number>"),
                )
            });
    }
    if let Some(reference) = chain_id.strip_prefix("solana:") {
        return Ok(ProofChain::Solana(reference));
    }
    Err(refuse(
        reason::UNSUPPORTED_CHAIN,
        format!(
            "Unsupported chain namespace: {chain_id}. Supported: eip155:* (EVM), solana:* (Solana)"
        ),
    ))
}

/// Checks an EVM proof's signature over `text`. An EOA signature needs no chain; anything else
/// asks the plugin serving the proof's chain, and without one the proof cannot be checked.
pub async fn check_evm(
    facilitator: &Facilitator,
    p: &Proof,
    text: &str,
    deadline: Deadline,
) -> Result<(), Refusal> {
    let failed = || refuse(reason::SIGNATURE, "Signature verification failed");
    let signer = parse_address(&p.address).ok_or_else(failed)?;
    let sig = p
        .signature
        .strip_prefix("0x")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(failed)?;
    let hash = eip191_hash_message(text.as_bytes());
    // High `s` is accepted here, as the official verifier accepts it: a sign-in is not a
    // transfer a token would refuse, and replay is keyed on the nonce, not the signature.
    if sig.len() == 65 && recover(hash, &sig) == Some(signer) {
        return Ok(());
    }
    let Some(handler) = facilitator.network_handler(&p.chain_id) else {
        return Err(refuse(
            reason::SIGNATURE,
            format!(
                "Signature verification failed: not an EOA signature, and smart-wallet \
                 signatures on {} need a network this facilitator serves",
                p.chain_id
            ),
        ));
    };
    match handler
        .signed_hash(&p.address, hash.0, &sig, deadline)
        .await
    {
        Ok(Some(true)) => Ok(()),
        Ok(_) => Err(failed()),
        Err(SchemeError::Rpc(_)) => Err(refuse(
            reason::VERIFIER_ERROR,
            "the chain RPC gave no answer; try again",
        )),
        Err(e) => Err(refuse(reason::VERIFIER_ERROR, e.to_string())),
    }
}

/// Checks a Solana proof's Ed25519 signature over `text`. Small-order public keys are refused
/// (as the official verifier refuses them), and so are non-canonical signatures
/// (`verify_strict`), which an honest signer never produces.
pub fn check_solana(p: &Proof, text: &str) -> Result<(), Refusal> {
    let decode = |s: &str| {
        bs58::decode(s).into_vec().map_err(|e| {
            refuse(
                reason::MALFORMED_SIGNATURE,
                format!("Invalid Base58 encoding: {e}"),
            )
        })
    };
    let sig = decode(&p.signature)?;
    let key = decode(&p.address)?;
    let sig: [u8; 64] = sig.as_slice().try_into().map_err(|_| {
        refuse(
            reason::MALFORMED_SIGNATURE,
            format!(
                "Invalid signature length: expected 64 bytes, got {}",
                sig.len()
            ),
        )
    })?;
    let key: [u8; 32] = key.as_slice().try_into().map_err(|_| {
        refuse(
            reason::MALFORMED_SIGNATURE,
            format!(
                "Invalid public key length: expected 32 bytes, got {}",
                key.len()
            ),
        )
    })?;
    let failed = || refuse(reason::SIGNATURE, "Solana signature verification failed");
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| failed())?;
    if key.is_weak() {
        return Err(failed());
    }
    key.verify_strict(text.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| failed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::message;
    use crate::sessions::proof::tests::proof;

    /// The deterministic vectors of docs/sessions.md, signed by `@x402/extensions` 2.27.0.
    #[test]
    fn official_client_vectors_verify_and_a_changed_field_does_not() {
        let mut p = proof(
            "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
            "GmaDrppBC7P5ARKV8g3djiwP89vz1jLK23V2GBjuAEGB",
        );
        p.statement = None;
        p.signature = "55oPE4iwoTk4PtKE6UNot4JRmhnUMFyVmc87fZJtu9Rjhp8Usx6PSQxyPc2HqA7iCUo4ydg2S3EFaB2LnkypGnAZ".into();
        let text = message::siws(&p, "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp");
        assert_eq!(check_solana(&p, &text), Ok(()));
        p.nonce = "a1b2c3d4e5f67890a1b2c3d4e5f67891".into();
        let text = message::siws(&p, "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp");
        assert_eq!(
            check_solana(&p, &text).map_err(|r| r.reason),
            Err(reason::SIGNATURE)
        );

        let p = proof("eip155:8453", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
        let text = message::siwe(&p, 8453).expect("siwe");
        let sig = hex::decode("2a9c7e27ccac3fa11b864ccc39bd6cd1b9a16fdf7567189bcaea04b5662121cf124a16d83cf9a74c6c758dea01c3a682a6de2e1ae05d5007082c025dda47ff4d1c").expect("hex");
        let signer = parse_address(&p.address).expect("address");
        assert_eq!(
            recover(eip191_hash_message(text.as_bytes()), &sig),
            Some(signer)
        );
    }
}
