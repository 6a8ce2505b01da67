//! x402 facilitator: checks payments (`POST /verify`) and puts them on chain (`POST /settle`),
//! with a ledger that makes every settlement happen at most once.
//!
//! A request walks one way: [`http`] → [`facilitator`] (the core) → a [`scheme`] plugin from
//! [`schemes`] → its chain client; the [`ledger`] sits beside the core. Nothing lower imports
//! anything higher.
//!
//! - [`protocol`]: wire types (v1, v2), network ids, generic reason strings.
//! - [`config`]: layered settings (compiled-in defaults → file → environment).
//! - [`scheme`]: the plugin seam and the registry keyed by (version, scheme, network).
//! - [`schemes`]: the plugins (EVM `exact` via EIP-3009).
//! - [`ledger`]: settlements and replay keys in Postgres or SQLite.
//! - [`facilitator`]: dispatch, replay checks, claim → sign → record → broadcast → confirm.
//! - [`http`]: the axum router, error mapping, request ids.
//! - [`app`]: building and running the whole service; [`telemetry`]: logs.

pub mod app;
pub mod config;
pub mod facilitator;
pub mod http;
pub mod ledger;
pub mod protocol;
pub mod scheme;
pub mod schemes;
pub mod telemetry;
