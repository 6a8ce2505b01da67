//! Solana `exact` reason strings, as the installed `@x402/svm` 2.27 uses them (digest §3.5,
//! newer-upstream list), plus the legacy string for a fee payer found in an instruction and one
//! of ours for a mint extension the fee payer will not sponsor.

pub const UNSUPPORTED_SCHEME: &str = "invalid_exact_svm_unsupported_scheme";
pub const NETWORK_MISMATCH: &str = "invalid_exact_svm_network_mismatch";
pub const MISSING_FEE_PAYER: &str = "invalid_exact_svm_payload_missing_fee_payer";
pub const FEE_PAYER_NOT_MANAGED: &str = "invalid_exact_svm_fee_payer_not_managed_by_facilitator";
pub const INVALID_TRANSACTION: &str = "invalid_exact_svm_payload_transaction";
pub const COULD_NOT_BE_DECODED: &str = "invalid_exact_svm_payload_transaction_could_not_be_decoded";
pub const SIGNATURE_INVALID: &str = "invalid_exact_svm_payload_signature_invalid";
pub const EXCESSIVE_SIGNERS: &str = "invalid_exact_svm_payload_excessive_signers";
pub const INSTRUCTIONS_LENGTH: &str = "invalid_exact_svm_payload_transaction_instructions_length";
pub const COMPUTE_LIMIT: &str =
    "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction";
pub const COMPUTE_LIMIT_TOO_HIGH: &str =
    "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction_too_high";
pub const COMPUTE_PRICE: &str =
    "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction";
pub const COMPUTE_PRICE_TOO_HIGH: &str =
    "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high";
pub const NO_TRANSFER_INSTRUCTION: &str = "invalid_exact_svm_payload_no_transfer_instruction";
pub const FEE_PAYER_TRANSFERRING_FUNDS: &str =
    "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds";
/// The legacy v1 string (still in the SDK vocabulary) for the spec's MUST that a fee payer appear
/// in no instruction's accounts; 2.27 only checks the transfer authority on the static path.
pub const FEE_PAYER_IN_INSTRUCTION_ACCOUNTS: &str =
    "invalid_exact_svm_payload_transaction_fee_payer_included_in_instruction_accounts";
pub const MINT_MISMATCH: &str = "invalid_exact_svm_payload_mint_mismatch";
pub const RECIPIENT_MISMATCH: &str = "invalid_exact_svm_payload_recipient_mismatch";
pub const AMOUNT_MISMATCH: &str = "invalid_exact_svm_payload_amount_mismatch";
pub const UNKNOWN_INSTRUCTION: [&str; 4] = [
    "invalid_exact_svm_payload_unknown_fourth_instruction",
    "invalid_exact_svm_payload_unknown_fifth_instruction",
    "invalid_exact_svm_payload_unknown_sixth_instruction",
    "invalid_exact_svm_payload_unknown_seventh_instruction",
];
pub const MEMO_COUNT: &str = "invalid_exact_svm_payload_memo_count";
pub const MEMO_MISMATCH: &str = "invalid_exact_svm_payload_memo_mismatch";
pub const FEE_PAYER_MISMATCH: &str = "invalid_exact_svm_fee_payer_mismatch";
pub const SIMULATION_FAILED: &str = "invalid_exact_svm_transaction_simulation_failed";
pub const TRANSACTION_FAILED: &str = "invalid_exact_svm_transaction_failed";
/// Ours (no SDK string exists): the mint (or the destination account) carries a Token-2022
/// extension this network does not sponsor (`allow_mint_extensions`); the message names it.
pub const MINT_EXTENSION_NOT_ALLOWED: &str = "invalid_exact_svm_payload_mint_extension_not_allowed";
