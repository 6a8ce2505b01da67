//! Sessions (issue #18): a seller hands us a buyer's Sign-In-With-X proof (CAIP-122) and we say
//! whether it is valid — the rebuilt EIP-4361/SIWS text, the seller's domain and origin, the
//! clock, the chain, the signature (EOA, ERC-1271, ERC-6492, Ed25519) and a single-use nonce in
//! the ledger — and, from settled payments, whether that wallet paid for a resource lately.
//! The checks and their order are described in docs/sessions.md.
//!
//! - [`proof`]: the payload, its decoding and the checks that need no signature;
//! - [`message`]: the signed text; [`signature`]: the signature over it;
//! - [`entitlement`]: the ledger question and the payTo scoping; [`time`]: RFC 3339 dates;
//! - [`nonces`]: single-use nonce claims, batched into one statement per burst.

pub mod entitlement;
pub mod message;
pub mod nonces;
pub mod proof;
pub mod reason;
pub mod signature;
pub mod time;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use self::entitlement::Question;
use self::proof::{Expected, Proof, Refusal, refuse};
use self::signature::ProofChain;
use crate::config::SessionSettings;
use crate::facilitator::Facilitator;
use crate::ledger::{EntitledPayment, LedgerError, now_ms};
use crate::scheme::Deadline;

/// The extension key advertised in `/supported.extensions` when sessions are on.
pub const EXTENSION: &str = "sign-in-with-x";
/// The longest `maxAgeSeconds` a seller may ask for; nonces are kept this long past `issuedAt`,
/// so no proof can outlive the record of its nonce.
pub const MAX_AGE_CEILING_SECS: u64 = 3600;
pub const DEFAULT_MAX_AGE_SECS: u64 = 300;
/// How long one proof check may take, RPC included (smart-wallet signatures).
const CHECK_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The seller's part of the request is unusable (400).
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Nonce(#[from] nonces::ClaimFailed),
}

/// A proof check: the proof, what the seller expects, and optionally the entitlement to answer
/// at once.
#[derive(Debug, Clone)]
pub struct ProofCheck {
    pub proof: Result<Proof, Refusal>,
    pub domain: String,
    /// The seller's resource URI; its origin must be the proof's.
    pub uri: String,
    /// The CAIP-2 chains the seller accepts.
    pub chains: Vec<String>,
    pub max_age_secs: Option<u64>,
    /// `resource`, `within`, `payTo`, `network` (the payer is the proof's address).
    pub entitlement: Option<Question>,
}

/// What a proof check found.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub refusal: Option<Refusal>,
    /// The proof's address and chain, when the proof decoded.
    pub address: Option<String>,
    pub chain_id: Option<String>,
    /// `Some` when an entitlement was asked for and the proof is valid.
    pub entitlement: Option<Option<EntitledPayment>>,
}

pub struct Sessions {
    facilitator: Arc<Facilitator>,
    settings: SessionSettings,
    nonces: nonces::NonceClaims,
}

impl Sessions {
    /// Needs a runtime: it starts the nonce claimer (`nonces`).
    pub fn new(facilitator: Arc<Facilitator>, settings: SessionSettings) -> Self {
        let nonces = nonces::NonceClaims::start(facilitator.ledger().clone());
        Sessions {
            facilitator,
            settings,
            nonces,
        }
    }

    /// Checks a proof (docs/sessions.md "Checks"), consuming its nonce when everything else
    /// passed, then answers the entitlement if one was asked for. `allowed`: see
    /// [`entitlement::scope`].
    pub async fn verify(
        &self,
        check: ProofCheck,
        allowed: Option<&[String]>,
    ) -> Result<Verdict, SessionError> {
        let expected = self.expected(&check)?;
        let mut verdict = Verdict {
            refusal: None,
            address: None,
            chain_id: None,
            entitlement: None,
        };
        let proof = match check.proof {
            Ok(p) => p,
            Err(r) => {
                verdict.refusal = Some(r);
                return Ok(verdict);
            }
        };
        verdict.address = Some(proof.address.clone());
        verdict.chain_id = Some(proof.chain_id.clone());
        if let Err(r) = self.check_proof(&proof, &expected, &check.chains).await? {
            verdict.refusal = Some(r);
            return Ok(verdict);
        }
        if let Some(mut q) = check.entitlement {
            q.payer = proof.address.clone();
            let ledger = self.facilitator.ledger();
            verdict.entitlement = Some(entitlement::lookup(ledger, &q, allowed, now_ms()).await?);
        }
        Ok(verdict)
    }

    /// The seller's expectations, checked: they are the seller's input, so a bad one is a 400.
    fn expected(&self, check: &ProofCheck) -> Result<Expected, SessionError> {
        let input = |m: String| SessionError::Input(m);
        let uri = url::Url::parse(&check.uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| input(format!("uri \"{}\" is not an http(s) URL", check.uri)))?;
        if check.domain.is_empty() {
            return Err(input("domain must not be empty".into()));
        }
        if check.chains.is_empty() {
            return Err(input("chains must name at least one CAIP-2 chain".into()));
        }
        let max_age = check.max_age_secs.unwrap_or(DEFAULT_MAX_AGE_SECS);
        if !(1..=MAX_AGE_CEILING_SECS).contains(&max_age) {
            return Err(input(format!(
                "maxAgeSeconds must be between 1 and {MAX_AGE_CEILING_SECS}"
            )));
        }
        if let Some(q) = &check.entitlement {
            entitlement::resource_key(&q.resource).map_err(input)?;
        }
        Ok(Expected {
            domain: check.domain.clone(),
            origin: uri.origin().ascii_serialization(),
            max_age_ms: (max_age * 1000) as i64,
            skew_ms: self.settings.clock_skew_ms as i64,
        })
    }

    /// Fields, chain, text, signature, then the nonce: the nonce is taken last so that a proof
    /// refused for any other reason does not burn it.
    async fn check_proof(
        &self,
        p: &Proof,
        expected: &Expected,
        chains: &[String],
    ) -> Result<Result<(), Refusal>, SessionError> {
        let now = now_ms();
        let issued = match proof::check_fields(p, expected, now) {
            Ok(issued) => issued,
            Err(r) => return Ok(Err(r)),
        };
        let chain = match signature::chain_of(&p.chain_id) {
            Ok(c) => c,
            Err(r) => return Ok(Err(r)),
        };
        if !chains.iter().any(|c| c == &p.chain_id) {
            return Ok(Err(refuse(
                reason::CHAIN_NOT_ACCEPTED,
                format!("chain {} is not one the seller accepts", p.chain_id),
            )));
        }
        let signed = match chain {
            ProofChain::Evm(id) => match message::siwe(p, id) {
                Ok(text) => {
                    let deadline = Deadline::after(CHECK_DEADLINE);
                    signature::check_evm(&self.facilitator, p, &text, deadline).await
                }
                Err(e) => Err(refuse(
                    reason::MESSAGE,
                    format!("SIWE message invalid: {}", e.0),
                )),
            },
            ProofChain::Solana(reference) => {
                signature::check_solana(p, &message::siws(p, reference))
            }
        };
        if let Err(r) = signed {
            return Ok(Err(r));
        }
        let ceiling = (MAX_AGE_CEILING_SECS * 1000) as i64;
        let expires = issued.saturating_add(ceiling + 1);
        let claimed = self.nonces.claim(nonce_key(p), expires).await?;
        Ok(if claimed.applied() {
            Ok(())
        } else {
            Err(refuse(
                reason::NONCE,
                "Nonce validation failed (possible replay attack)",
            ))
        })
    }

    /// Answers an entitlement question on its own (`GET /sessions/entitlement`).
    pub async fn entitlement(
        &self,
        q: &Question,
        allowed: Option<&[String]>,
    ) -> Result<Option<EntitledPayment>, SessionError> {
        entitlement::lookup(self.facilitator.ledger(), q, allowed, now_ms()).await
    }

    /// Deletes expired nonces now and then, until `stop`.
    pub fn spawn_pruner(
        self: &Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let ledger = self.facilitator.ledger().clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = ledger.prune_session_nonces(now_ms(), 10_000).await {
                            tracing::warn!(error = %e, "pruning expired session nonces failed");
                        }
                    }
                }
            }
        })
    }
}

/// A nonce is single-use per (domain, address): a proof is bound to both, and keying on them
/// keeps one buyer from burning another's nonce. Hashed to bound the key's length.
fn nonce_key(p: &Proof) -> String {
    let mut h = Sha256::new();
    for part in [p.domain.as_str(), &p.address.to_ascii_lowercase(), &p.nonce] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    alloy::primitives::hex::encode(h.finalize())
}
