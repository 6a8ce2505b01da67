//! Bazaar discovery (src/discovery, src/ledger/catalog.rs), end to end and from the hostile side:
//!
//! - `catalog`: the ledger's catalog contract on both backends (merging, ranking, filters,
//!   usage counts, age-out, the size bound, inert search text);
//! - `poisoning`: really-signed payments carrying hostile bazaar extensions through our real app
//!   on anvil catalogue nothing they should not; the operator's policy for verify-only entries;
//!   the query parameters;
//! - `sdk`: the official `@x402/express` seller, `@x402/fetch` buyer and `withBazaar` discovery
//!   client (tests/interop/e2e-bazaar.mjs) against us, on both backends.

mod catalog;
pub mod poisoning;
mod sdk;
