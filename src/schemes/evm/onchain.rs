//! What a checked EVM payment asks of the chain, in the terms the shared settle machinery
//! (`settle.rs`) needs: the call that performs it, who may send it, the `Transfer` its receipt
//! must carry, when it can no longer be mined, how to read whether the payer's authorization was
//! spent, how to find someone else's transaction that executed or cancelled it, and its reason
//! strings. EIP-3009 `exact`, Permit2 `exact` and `upto` each implement
//! it; nothing else in the settle path knows which one it is running.

use alloy::primitives::{Address, Bytes, U256};
use alloy::rpc::types::{Filter, Log};

use super::chain::RpcFailure;
use super::network::EvmNetwork;
use crate::scheme::Rejection;

/// The `Transfer(from, to, value)` the asset must emit for the payment to have happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub asset: Address,
    pub from: Address,
    pub to: Address,
    pub value: U256,
}

/// The reason strings of one payment kind, for the outcomes the settle machinery decides.
#[derive(Debug)]
pub struct Reasons {
    /// Mined and reverted, or dropped for good (its nonce reused).
    pub reverted: &'static str,
    /// The payer's authorization was used by another transaction.
    pub spent: &'static str,
    /// It can never be mined any more: the authorization expired on chain.
    pub expired: &'static str,
    /// Mined without the expected `Transfer`.
    pub no_transfer: &'static str,
    /// It would not run as it stands (e.g. its gas estimate is above the network's cap).
    pub unrunnable: &'static str,
}

pub trait OnChain: Send + Sync {
    /// Target and calldata of the transaction that performs the payment.
    fn call(&self, net: &EvmNetwork) -> (Address, Bytes);

    /// The one key that must send it, when the contract checks `msg.sender` (`upto`: the
    /// facilitator named in the signed witness); `None`: any of ours, in turn.
    fn sender(&self) -> Option<Address> {
        None
    }

    fn transfer(&self) -> Transfer;

    /// Unix time after which the chain refuses it (EIP-3009 `validBefore`, Permit2 `deadline`).
    fn expires_at(&self) -> U256;

    /// A read (target, calldata) whose answer says whether the payer's authorization is spent.
    fn spent_query(&self, net: &EvmNetwork) -> (Address, Bytes);

    /// Decodes the answer to [`OnChain::spent_query`]; `None` when it is unreadable.
    fn is_spent(&self, answer: &[u8]) -> Option<bool>;

    /// Logs among which a transaction that executed this authorization, when none of ours did,
    /// is named (`settle.rs`: a front-run copy of our calldata, another facilitator settling the
    /// same payment). No block range: the caller adds it.
    fn executions(&self, net: &EvmNetwork) -> Filter;

    /// Whether a log found by [`OnChain::executions`] may name such a transaction (a cheap
    /// look at the log before its transaction is fetched).
    fn may_execute(&self, _log: &Log) -> bool {
        true
    }

    /// Whether the found transaction's calldata must also name the authorization: where no
    /// event names it (Permit2 logs nothing of the nonce it uses), its `Transfer` alone could
    /// be another payment between the same two parties.
    fn needs_calldata(&self) -> bool {
        false
    }

    /// See [`OnChain::needs_calldata`].
    fn executed_in(&self, _input: &[u8]) -> bool {
        true
    }

    /// Logs among which the payer's cancellation of this authorization would be.
    fn cancellations(&self, net: &EvmNetwork) -> Filter;

    /// Whether a log found by [`OnChain::cancellations`] cancels this very authorization.
    fn cancels(&self, _log: &Log) -> bool {
        true
    }

    fn reasons(&self) -> &'static Reasons;

    /// A node refused the signed transaction with a revert: the payment's reason for it.
    fn refused(&self, failure: &RpcFailure) -> Rejection;
}
