//! Integration tests: the real app over HTTP, a real anvil chain, real Postgres and SQLite.
//! Run them with scripts/test, which provisions anvil, Postgres and the SDK packages.

mod harness;

mod access;
mod auth_headers;
mod cli;
mod console;
mod container;
mod demo;
mod discovery;
mod evm_rejections;
mod evm_settle;
mod exactly_once;
mod health;
mod hostile;
mod http_surface;
mod interop_suite;
mod ledger_contract;
mod money_path;
mod openapi;
mod permit2_exact;
mod permit2_money_path;
mod presets;
mod replicas;
mod sdk_interop;
mod sessions;
mod svm;
mod upto;
mod upto_interop;
