//! Permit2 payments (digest §4.6, §4.7, §10.2.1; docs/schemes.md), for the two schemes that use
//! them: `exact` with `assetTransferMethod: "permit2"` (tokens without EIP-3009, through the x402
//! exact proxy, which always moves the signed amount) and `upto` (through the upto proxy, which
//! moves the seller's charge, up to the signed maximum, and only when sent by the facilitator the
//! payer named in the witness).
//!
//! The payer signs a Permit2 `PermitWitnessTransferFrom` for the proxy (`typed.rs`); the checks
//! run in the installed SDK's order (`check.rs`); the proxy call is built in `calls.rs`, with the
//! `eip2612GasSponsoring` permit when the payer sent one (`eip2612.rs`); a failed simulation is
//! diagnosed in `diagnose.rs`. The replay key is Permit2's own replay domain, its unordered
//! nonce: one (owner, nonce) is usable once on a chain whatever the spender, so an `exact` and an
//! `upto` payment with the same nonce claim the same ledger row and only one can ever settle.

mod calls;
mod check;
mod diagnose;
pub mod eip2612;
mod payload;
mod typed;

use alloy::primitives::{Address, Bytes, U256, address};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::{SolEvent, SolValue};

pub use self::check::{check, revive, simulate};
pub use self::diagnose::diagnose;
pub use self::eip2612::Eip2612Permit;
pub use self::payload::raw_from;
use super::chain::RpcFailure;
use super::contracts::IEip3009;
use super::network::EvmNetwork;
use super::onchain::{OnChain, Reasons, Transfer};
use super::reason;
use crate::scheme::Rejection;

/// Canonical Permit2 (the SDK's `PERMIT2_ADDRESS`).
pub const PERMIT2: Address = address!("000000000022D473030F116dDEE9F6B43aC78BA3");
/// The SDK's `x402ExactPermit2Proxy` (the same on every chain, by CREATE2).
pub const EXACT_PROXY: Address = address!("402085c248EeA27D92E8b30b2C58ed07f9E20001");
/// The SDK's `x402UptoPermit2Proxy` in `@x402/evm` 2.27 (the address has changed upstream
/// several times and differs between chains: digest §10.2.1; configurable per network).
pub const UPTO_PROXY: Address = address!("4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");

/// `deadline` must leave this many seconds for the transaction to land (the SDK's `now + 6`).
const EXPIRY_BUFFER_SECS: u64 = 6;

/// Calldata of a proxy's `PERMIT2()`, which names the Permit2 it calls.
pub fn proxy_permit2_call() -> Bytes {
    use alloy::sol_types::SolCall;
    calls::IProxy::PERMIT2Call {}.abi_encode().into()
}

/// Which x402 proxy a payment goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    Exact,
    Upto,
}

impl Proxy {
    pub fn scheme(self) -> &'static str {
        match self {
            Proxy::Exact => "exact",
            Proxy::Upto => "upto",
        }
    }
}

/// Where Permit2 and the scheme's proxy live on one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contracts {
    pub permit2: Address,
    pub proxy: Address,
}

/// Which request a check is for: in `upto`, `requirements.amount` is the signed maximum at
/// `/verify` and the seller's charge at `/settle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Verify,
    Settle,
}

/// The signed `permit2Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub from: Address,
    pub token: Address,
    /// `permitted.amount`: for `upto` the maximum.
    pub amount: U256,
    pub spender: Address,
    pub nonce: U256,
    pub deadline: U256,
    /// `witness.to`: the payee.
    pub to: Address,
    /// `witness.facilitator` (`upto` only): the one key allowed to settle it.
    pub facilitator: Option<Address>,
    pub valid_after: U256,
}

/// A checked Permit2 payment.
#[derive(Debug, Clone)]
pub struct Permit2Payment {
    pub kind: Proxy,
    pub authorization: Authorization,
    /// The signature the contracts check.
    pub signature: Bytes,
    /// What moves: the signed amount (`exact`), the seller's charge (`upto` at settle; the
    /// maximum at verify, which is what a verify simulates).
    pub charge: U256,
    pub permit2612: Option<Eip2612Permit>,
    pub contracts: Contracts,
}

static EXACT_REASONS: Reasons = Reasons {
    reverted: reason::TRANSACTION_FAILED,
    spent: reason::PERMIT2_INVALID_NONCE,
    expired: reason::PERMIT2_DEADLINE_EXPIRED,
    no_transfer: reason::TRANSFER_EVENT_MISMATCH,
    unrunnable: reason::PERMIT2_SIMULATION_FAILED,
};

static UPTO_REASONS: Reasons = Reasons {
    reverted: reason::UPTO_TRANSACTION_FAILED,
    spent: reason::PERMIT2_INVALID_NONCE,
    expired: reason::PERMIT2_DEADLINE_EXPIRED,
    no_transfer: reason::TRANSFER_EVENT_MISMATCH,
    unrunnable: reason::PERMIT2_SIMULATION_FAILED,
};

impl OnChain for Permit2Payment {
    fn call(&self, _net: &EvmNetwork) -> (Address, Bytes) {
        calls::settlement(self)
    }

    fn sender(&self) -> Option<Address> {
        match self.kind {
            Proxy::Exact => None,
            Proxy::Upto => self.authorization.facilitator,
        }
    }

    /// Permit2 moves the tokens with the token's own `transferFrom(owner, to, charge)`.
    fn transfer(&self) -> Transfer {
        let a = &self.authorization;
        Transfer {
            asset: a.token,
            from: a.from,
            to: a.to,
            value: self.charge,
        }
    }

    fn expires_at(&self) -> U256 {
        self.authorization.deadline
    }

    fn spent_query(&self, _net: &EvmNetwork) -> (Address, Bytes) {
        calls::nonce_word(self)
    }

    fn is_spent(&self, answer: &[u8]) -> Option<bool> {
        let word = U256::abi_decode(answer).ok()?;
        Some(word & calls::nonce_bit(self.authorization.nonce) != U256::ZERO)
    }

    /// Permit2 logs nothing of the nonce it uses: the asset's `Transfer(payer, payee)` logs,
    /// of the charge ([`OnChain::may_execute`]), whose transaction's calldata carries the nonce.
    fn executions(&self, _net: &EvmNetwork) -> Filter {
        let a = &self.authorization;
        Filter::new()
            .address(a.token)
            .event_signature(IEip3009::Transfer::SIGNATURE_HASH)
            .topic1(a.from.into_word())
            .topic2(a.to.into_word())
    }

    fn may_execute(&self, log: &Log) -> bool {
        IEip3009::Transfer::decode_log(&log.inner).is_ok_and(|t| t.value == self.charge)
    }

    fn needs_calldata(&self) -> bool {
        true
    }

    fn executed_in(&self, input: &[u8]) -> bool {
        calls::carries_nonce(self, input)
    }

    fn cancellations(&self, _net: &EvmNetwork) -> Filter {
        calls::invalidations(self)
    }

    fn cancels(&self, log: &Log) -> bool {
        calls::invalidates(self, log)
    }

    fn reasons(&self) -> &'static Reasons {
        match self.kind {
            Proxy::Exact => &EXACT_REASONS,
            Proxy::Upto => &UPTO_REASONS,
        }
    }

    fn refused(&self, failure: &RpcFailure) -> Rejection {
        diagnose::refused(self, failure)
    }
}
