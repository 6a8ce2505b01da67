//! Test harness: a real anvil chain, a real ledger database, the real app on a loopback port,
//! and really-signed payments.

pub mod app;
pub mod chain;
pub mod db;
pub mod payment;
pub mod process;
pub mod proxy;
pub mod script;
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
