//! x402 facilitator: checks payments (`POST /verify`) and puts them on chain (`POST /settle`),
//! with a ledger that makes every settlement happen at most once.
//!
//! A request walks one way: [`http`] → [`facilitator`] (the core) → a [`scheme`] plugin from
//! [`schemes`] → its chain client; the [`ledger`] sits beside the core. Nothing lower imports
//! anything higher.
//!
//! - [`protocol`]: wire types (v1, v2), network ids, generic reason strings.
//! - [`config`]: layered settings (compiled-in defaults → network presets → file → environment).
//! - [`scheme`]: the plugin seam (a typed `Scheme` trait, erased once by `Erased`) and the
//!   registry keyed by (version, scheme, network).
//! - [`schemes`]: the plugins: EVM `exact` (EIP-3009 or Permit2) and `upto` (Permit2), Solana
//!   `exact` (SPL `TransferChecked`).
//! - [`ledger`]: settlements, replay keys, signer leases and payment identifiers, in Postgres or
//!   SQLite through one pool.
//! - [`facilitator`]: dispatch, replay checks, claim → sign → record → broadcast → confirm, the
//!   reconciler, signer leases, metrics.
//! - [`discovery`]: the bazaar catalog: learning paid resources from payments off the hot path,
//!   and listing and searching them.
//! - [`sessions`]: sign-in proofs (SIWX, CAIP-122) checked for sellers, and entitlements
//!   ("has this wallet paid for this?") answered from settled payments.
//! - [`access`]: API keys and scopes, rate limits, operator policy and cluster-wide budgets.
//! - [`http`]: the axum router, extractors, the one error mapping, request ids, receipts,
//!   discovery.
//! - [`app`]: building and running the whole service; [`telemetry`]: logs.

pub mod access;
pub mod app;
pub mod config;
pub mod discovery;
pub mod facilitator;
pub mod http;
pub mod ledger;
pub mod protocol;
pub mod scheme;
pub mod schemes;
pub mod sessions;
pub mod telemetry;
