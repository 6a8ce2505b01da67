//! Bazaar discovery (src/discovery, src/ledger/catalog.rs), end to end and from the hostile side:
//!
//! - `catalog`: the ledger's catalog contract on both backends (merging, ranking, filters,
//!   usage counts, age-out, the size bound, inert search text).

mod catalog;
