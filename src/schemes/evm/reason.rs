//! EVM reason strings (`exact` via EIP-3009 and Permit2, `upto`), as the installed `@x402/evm`
//! 2.27 uses them (digest §3.2–§3.4 plus the newer upstream strings; `tests/interop/reasons.mjs`
//! lists the SDK's own, and the interop suite checks every constant here against it).

pub const SCHEME: &str = "invalid_exact_evm_scheme";
pub const NETWORK_MISMATCH: &str = "invalid_exact_evm_network_mismatch";
pub const MISSING_EIP712_DOMAIN: &str = "invalid_exact_evm_missing_eip712_domain";
pub const RECIPIENT_MISMATCH: &str = "invalid_exact_evm_recipient_mismatch";
pub const SIGNATURE: &str = "invalid_exact_evm_signature";
pub const VALID_BEFORE: &str = "invalid_exact_evm_payload_authorization_valid_before";
pub const VALID_AFTER: &str = "invalid_exact_evm_payload_authorization_valid_after";
/// v2 amount mismatch (TS ≥ 2.2x, Go, Python, spec).
pub const VALUE_MISMATCH: &str = "invalid_exact_evm_payload_authorization_value_mismatch";
/// v1 amount mismatch (the TS v1 facilitator still uses the old string).
pub const VALUE_MISMATCH_V1: &str = "invalid_exact_evm_authorization_value";
pub const UNDEPLOYED_SMART_WALLET: &str = "invalid_exact_evm_payload_undeployed_smart_wallet";
pub const FACTORY_NOT_ALLOWED: &str = "eip6492_factory_not_allowed";
pub const ASSET_NOT_DEPLOYED: &str = "asset_not_deployed_contract";
pub const TRANSACTION_FAILED: &str = "invalid_exact_evm_transaction_failed";
pub const TOKEN_NAME_MISMATCH: &str = "invalid_exact_evm_token_name_mismatch";
pub const TOKEN_VERSION_MISMATCH: &str = "invalid_exact_evm_token_version_mismatch";
pub const EIP3009_NOT_SUPPORTED: &str = "invalid_exact_evm_eip3009_not_supported";
pub const NONCE_ALREADY_USED: &str = "invalid_exact_evm_nonce_already_used";
pub const INSUFFICIENT_BALANCE: &str = "invalid_exact_evm_insufficient_balance";
pub const SIMULATION_FAILED: &str = "invalid_exact_evm_transaction_simulation_failed";
pub const UNSUPPORTED_PAYLOAD_TYPE: &str = "unsupported_payload_type";
pub const TRANSFER_EVENT_MISMATCH: &str = "invalid_exact_evm_transfer_event_mismatch";

// Permit2 (`exact` with `assetTransferMethod: "permit2"`, and `upto`): digest §3.3, §4.6.
pub const PERMIT2_INVALID_SPENDER: &str = "invalid_permit2_spender";
pub const PERMIT2_RECIPIENT_MISMATCH: &str = "invalid_permit2_recipient_mismatch";
pub const PERMIT2_DEADLINE_EXPIRED: &str = "permit2_deadline_expired";
pub const PERMIT2_NOT_YET_VALID: &str = "permit2_not_yet_valid";
pub const PERMIT2_AMOUNT_MISMATCH: &str = "permit2_amount_mismatch";
pub const PERMIT2_TOKEN_MISMATCH: &str = "permit2_token_mismatch";
pub const PERMIT2_INVALID_SIGNATURE: &str = "invalid_permit2_signature";
pub const PERMIT2_ALLOWANCE_REQUIRED: &str = "permit2_allowance_required";
pub const PERMIT2_SIMULATION_FAILED: &str = "permit2_simulation_failed";
pub const PERMIT2_INSUFFICIENT_BALANCE: &str = "permit2_insufficient_balance";
pub const PERMIT2_PROXY_NOT_DEPLOYED: &str = "permit2_proxy_not_deployed";
pub const PERMIT2_INVALID_AMOUNT: &str = "permit2_invalid_amount";
pub const PERMIT2_INVALID_DESTINATION: &str = "permit2_invalid_destination";
pub const PERMIT2_INVALID_OWNER: &str = "permit2_invalid_owner";
pub const PERMIT2_PAYMENT_TOO_EARLY: &str = "permit2_payment_too_early";
pub const PERMIT2_INVALID_NONCE: &str = "permit2_invalid_nonce";
pub const PERMIT2_2612_AMOUNT_MISMATCH: &str = "permit2_2612_amount_mismatch";

// The `eip2612GasSponsoring` extension (digest §6.4).
pub const EIP2612_INVALID_FORMAT: &str = "invalid_eip2612_extension_format";
pub const EIP2612_FROM_MISMATCH: &str = "eip2612_from_mismatch";
pub const EIP2612_ASSET_MISMATCH: &str = "eip2612_asset_mismatch";
pub const EIP2612_SPENDER_NOT_PERMIT2: &str = "eip2612_spender_not_permit2";
pub const EIP2612_DEADLINE_EXPIRED: &str = "eip2612_deadline_expired";

// `upto` (digest §3.4, §10.2.1; the SDK's `upto/facilitator/errors.ts`).
pub const UPTO_SCHEME: &str = "invalid_upto_evm_scheme";
pub const UPTO_NETWORK_MISMATCH: &str = "invalid_upto_evm_network_mismatch";
pub const UPTO_FACILITATOR_MISMATCH: &str = "upto_facilitator_mismatch";
pub const UPTO_EXCEEDS_AMOUNT: &str = "invalid_upto_evm_payload_settlement_exceeds_amount";
pub const UPTO_TRANSACTION_FAILED: &str = "invalid_upto_evm_transaction_failed";
pub const UPTO_AMOUNT_EXCEEDS_PERMITTED: &str = "upto_amount_exceeds_permitted";
pub const UPTO_UNAUTHORIZED_FACILITATOR: &str = "upto_unauthorized_facilitator";

/// Maps a revert text to the most specific reason (the TS settle mapping, digest §4.5 step 6).
pub fn from_revert(text: &str) -> &'static str {
    let t = text.to_ascii_lowercase();
    let has = |s: &str| t.contains(s);
    if has("authorization is expired")
        || has("authorizationexpired")
        || (has("authorization") && has("valid before"))
    {
        VALID_BEFORE
    } else if has("not yet valid") || has("authorizationnotyetvalid") {
        VALID_AFTER
    } else if (has("authorization") && has("used")) || has("authorizationalreadyused") {
        NONCE_ALREADY_USED
    } else if has("exceeds balance")
        || has("insufficient balance")
        || has("erc20insufficientbalance")
    {
        INSUFFICIENT_BALANCE
    } else if has("invalid signature") || has("signermismatch") || has("invalidsignature") {
        SIGNATURE
    } else {
        TRANSACTION_FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_fiat_token_reverts() {
        assert_eq!(
            from_revert("execution reverted: FiatTokenV2: authorization is expired"),
            VALID_BEFORE
        );
        assert_eq!(
            from_revert("FiatTokenV2: authorization is not yet valid"),
            VALID_AFTER
        );
        assert_eq!(
            from_revert("FiatTokenV2: authorization is used or canceled"),
            NONCE_ALREADY_USED
        );
        assert_eq!(
            from_revert("ERC20: transfer amount exceeds balance"),
            INSUFFICIENT_BALANCE
        );
        assert_eq!(
            from_revert("ECRecover: invalid signature 's' value"),
            SIGNATURE
        );
        assert_eq!(from_revert("out of gas"), TRANSACTION_FAILED);
    }
}
