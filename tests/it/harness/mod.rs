//! Test harness: a real anvil chain, a real ledger database, the real app on a loopback port,
//! and really-signed payments.

pub mod app;
pub mod chain;
pub mod db;
pub mod link;
pub mod payment;
pub mod permit2;
pub mod process;
pub mod proxy;
pub mod script;
pub mod sdk;
pub mod solana;

pub use app::{Options, TestApp, spawn, spawn_with};
pub use chain::Chain;
pub use db::Db;
pub use payment::Payment;

use alloy::primitives::U256;

/// A chain, a funded payer with `payment` ready to sign, and nothing else.
pub async fn funded_payment(chain: &Chain) -> Payment {
    let payment = Payment::new(chain);
    chain
        .mint(chain.token, payment.from, U256::from(1_000_000u64))
        .await;
    payment
}

/// A funded payer of a Permit2 payment of `kind` on the chain's Permit2-only token; with
/// `approve`, it has approved Permit2 (the one-time step the SDK's `createPermit2ApprovalTx`
/// makes), else it relies on the EIP-2612 extension or has no allowance at all.
pub async fn funded_permit2(
    chain: &Chain,
    kind: permit2::Kind,
    facilitator: alloy::primitives::Address,
    approve: bool,
) -> permit2::Permit2Payment {
    let payment = permit2::Permit2Payment::new(chain, kind, facilitator);
    chain
        .mint(chain.permit_token, payment.from, U256::from(1_000_000u64))
        .await;
    if approve {
        chain
            .approve_permit2(&payment.payer, chain.permit_token)
            .await;
    }
    payment
}
