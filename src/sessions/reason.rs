//! The reason strings `POST /sessions/verify` answers with (README "Reason strings"). The
//! upstream ones are the official server's codes, unchanged; the `invalid_siwx_*` codes marked
//! "ours" cover checks the official server does not make or throws on.

pub const DOMAIN_MISMATCH: &str = "invalid_siwx_domain_mismatch";
pub const URI_MISMATCH: &str = "invalid_siwx_uri_mismatch";
pub const ISSUED_AT: &str = "invalid_siwx_issued_at";
pub const TOO_OLD: &str = "invalid_siwx_issued_at_too_old";
pub const IN_FUTURE: &str = "invalid_siwx_issued_at_in_future";
pub const EXPIRATION_TIME: &str = "invalid_siwx_expiration_time";
pub const EXPIRED: &str = "invalid_siwx_expired";
pub const NOT_BEFORE: &str = "invalid_siwx_not_before";
pub const NOT_YET_VALID: &str = "invalid_siwx_not_yet_valid";
pub const NONCE: &str = "invalid_siwx_nonce";
pub const SIGNATURE: &str = "invalid_siwx_signature";
pub const CHAIN_ID: &str = "invalid_siwx_chain_id";
pub const UNSUPPORTED_CHAIN: &str = "invalid_siwx_unsupported_chain";
pub const MALFORMED_SIGNATURE: &str = "invalid_siwx_malformed_signature";
pub const VERIFIER_ERROR: &str = "invalid_siwx_verifier_error";
/// Ours: the header or payload is not a proof (upstream throws "Invalid SIWX header: …").
pub const PAYLOAD: &str = "invalid_siwx_payload";
/// Ours: the fields break EIP-4361's grammar, so no client could have signed them as SIWE.
pub const MESSAGE: &str = "invalid_siwx_message";
/// Ours: a well-formed chain the seller does not accept (upstream does not check it).
pub const CHAIN_NOT_ACCEPTED: &str = "invalid_siwx_chain_not_accepted";
