//! Wire types of the x402 facilitator API, v1 and v2, and nothing else.
//!
//! These structs mirror the JSON exactly (see `../shared/docs/x402-protocol.md` §1–§2). Fields we do
//! not know are kept in `unknown` maps so that re-serialising a request never drops a seller's or a
//! client's data. This module imports nothing else from the crate.

pub mod network;
pub mod reason;
mod request;
mod types;

pub use network::NetworkId;
pub use request::{PaymentRequest, RequestError, parse_request};
pub use types::*;

#[cfg(test)]
mod tests;
