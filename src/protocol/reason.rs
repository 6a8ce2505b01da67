//! Reason strings put in `invalidReason` / `errorReason`.
//!
//! Generic ones come from the v2 spec list (digest §3.1); scheme-specific strings live with their
//! plugin. `settlement_pending` and `duplicate_settlement` are the ledger's (digest §8.4, §5.3).

pub const INVALID_PAYLOAD: &str = "invalid_payload";
pub const INVALID_PAYMENT_REQUIREMENTS: &str = "invalid_payment_requirements";
pub const INVALID_NETWORK: &str = "invalid_network";
pub const INVALID_X402_VERSION: &str = "invalid_x402_version";
pub const UNSUPPORTED_SCHEME: &str = "unsupported_scheme";
pub const UNEXPECTED_VERIFY_ERROR: &str = "unexpected_verify_error";
pub const UNEXPECTED_SETTLE_ERROR: &str = "unexpected_settle_error";
pub const DUPLICATE_SETTLEMENT: &str = "duplicate_settlement";
pub const SETTLEMENT_PENDING: &str = "settlement_pending";
/// Ours, with HTTP 503 and `Retry-After`: too many settles in flight on this replica.
pub const OVERLOADED: &str = "facilitator_overloaded";
