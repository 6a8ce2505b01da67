//! Integration tests: the real app over HTTP, a real anvil chain, real Postgres and SQLite.
//! Run them with scripts/test, which provisions anvil, Postgres and the SDK packages.

mod harness;

mod cli;
mod discovery;
mod evm_rejections;
mod evm_settle;
mod exactly_once;
mod http_surface;
mod interop_suite;
mod ledger_contract;
mod money_path;
mod replicas;
mod sdk_interop;
mod svm;
