//! Typed reading of the instructions the exact scheme inspects (digest §5.1, §5.5), on the
//! official layouts: ComputeBudget through `solana-compute-budget-interface`, SPL Token and
//! Token-2022 `TransferChecked` through `spl-token-interface`, Memo by its
//! `spl-memo-interface` id; and Lighthouse, which has no interface crate on this line, by our own
//! decoder of its instruction and target.
//!
//! Each reader checks the program id, the exact data length and the accounts, because the
//! official unpackers are lenient: `TokenInstruction::unpack` ignores bytes after `decimals`,
//! the runtime reads ComputeBudget data with `try_from_slice_unchecked`. Comparing the values
//! with the payment requirements is the verifier's job.

use borsh::BorshDeserialize;
use solana_compute_budget_interface::ComputeBudgetInstruction;
use solana_message::VersionedMessage;
use solana_pubkey::Pubkey;
use spl_token_interface::instruction::TokenInstruction;

use super::keys::{
    COMPUTE_BUDGET_PROGRAM, LIGHTHOUSE_PROGRAM, MEMO_PROGRAM, TOKEN_2022_PROGRAM, TOKEN_PROGRAM,
};

/// What makes an instruction not the one asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionError {
    #[error("no instruction {0}")]
    NoSuchInstruction(usize),
    #[error("account index {0} is loaded from an address lookup table")]
    LookupTableAccount(u8),
    #[error("program {found} is not the {expected} program")]
    WrongProgram {
        expected: &'static str,
        found: Pubkey,
    },
    #[error("instruction data is not a {0}")]
    WrongInstruction(&'static str),
    #[error("instruction data is {found} bytes; expected {expected}")]
    DataLength { expected: usize, found: usize },
    #[error("instruction has {found} accounts; expected {expected}")]
    AccountCount { expected: usize, found: usize },
    #[error("instruction has {found} accounts; expected at least {min}")]
    TooFewAccounts { min: usize, found: usize },
    #[error("memo is not valid UTF-8")]
    MemoNotUtf8,
    #[error("Lighthouse {0} is not allowed")]
    LighthouseRefused(&'static str),
}

/// An instruction of a message with its indexes replaced by keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedInstruction<'a> {
    pub program_id: Pubkey,
    pub accounts: Vec<Pubkey>,
    pub data: &'a [u8],
}

/// Instruction `index` of `message` with its keys. An account loaded from a lookup table has no
/// key without the table, so it is an error here: no check may skip an instruction it cannot
/// resolve (digest §5.5: unresolvable tables are rejected).
pub fn resolve(
    message: &VersionedMessage,
    index: usize,
) -> Result<ResolvedInstruction<'_>, InstructionError> {
    let ix = message
        .instructions()
        .get(index)
        .ok_or(InstructionError::NoSuchInstruction(index))?;
    let keys = message.static_account_keys();
    let key = |i: u8| {
        keys.get(usize::from(i))
            .copied()
            .ok_or(InstructionError::LookupTableAccount(i))
    };
    Ok(ResolvedInstruction {
        program_id: key(ix.program_id_index)?,
        accounts: ix
            .accounts
            .iter()
            .map(|&i| key(i))
            .collect::<Result<_, _>>()?,
        data: &ix.data,
    })
}

fn expect_program(
    found: &Pubkey,
    expected: &Pubkey,
    name: &'static str,
) -> Result<(), InstructionError> {
    if found == expected {
        Ok(())
    } else {
        Err(InstructionError::WrongProgram {
            expected: name,
            found: *found,
        })
    }
}

fn expect_len(data: &[u8], expected: usize) -> Result<(), InstructionError> {
    if data.len() == expected {
        Ok(())
    } else {
        Err(InstructionError::DataLength {
            expected,
            found: data.len(),
        })
    }
}

/// A ComputeBudget instruction, with no accounts (the program reads none; naming some would only
/// lock or smuggle in accounts) and exactly its layout's length.
fn compute_budget(
    ix: &ResolvedInstruction<'_>,
) -> Result<ComputeBudgetInstruction, InstructionError> {
    expect_program(&ix.program_id, &COMPUTE_BUDGET_PROGRAM, "ComputeBudget")?;
    // Borsh's `try_from_slice` refuses trailing bytes (the runtime's unchecked read ignores them).
    let parsed = ComputeBudgetInstruction::try_from_slice(ix.data)
        .map_err(|_| InstructionError::WrongInstruction("ComputeBudget instruction"))?;
    if !ix.accounts.is_empty() {
        return Err(InstructionError::AccountCount {
            expected: 0,
            found: ix.accounts.len(),
        });
    }
    Ok(parsed)
}

/// `SetComputeUnitLimit(units)`: data `[2, u32 LE]`.
pub fn compute_unit_limit(ix: &ResolvedInstruction<'_>) -> Result<u32, InstructionError> {
    match compute_budget(ix)? {
        ComputeBudgetInstruction::SetComputeUnitLimit(units) => Ok(units),
        _ => Err(InstructionError::WrongInstruction("SetComputeUnitLimit")),
    }
}

/// `SetComputeUnitPrice(micro-lamports per CU)`: data `[3, u64 LE]`.
pub fn compute_unit_price(ix: &ResolvedInstruction<'_>) -> Result<u64, InstructionError> {
    match compute_budget(ix)? {
        ComputeBudgetInstruction::SetComputeUnitPrice(price) => Ok(price),
        _ => Err(InstructionError::WrongInstruction("SetComputeUnitPrice")),
    }
}

/// SPL Token / Token-2022 `TransferChecked`: data `[12, u64 LE amount, u8 decimals]`, accounts
/// `[source, mint, destination, authority, ...multisig signers]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferChecked {
    pub token_program: Pubkey,
    pub source: Pubkey,
    pub mint: Pubkey,
    pub destination: Pubkey,
    pub authority: Pubkey,
    /// Present when `authority` is an SPL multisig account.
    pub multisig_signers: Vec<Pubkey>,
    pub amount: u64,
    pub decimals: u8,
}

/// The one layout: `TokenInstruction::unpack` ignores bytes after `decimals`, so the length is
/// checked here (no client writes them).
pub fn transfer_checked(ix: &ResolvedInstruction<'_>) -> Result<TransferChecked, InstructionError> {
    if ix.program_id != TOKEN_PROGRAM && ix.program_id != TOKEN_2022_PROGRAM {
        return Err(InstructionError::WrongProgram {
            expected: "Token or Token-2022",
            found: ix.program_id,
        });
    }
    let Ok(TokenInstruction::TransferChecked { amount, decimals }) =
        TokenInstruction::unpack(ix.data)
    else {
        return Err(InstructionError::WrongInstruction("TransferChecked"));
    };
    expect_len(ix.data, 10)?;
    let [source, mint, destination, authority, signers @ ..] = ix.accounts.as_slice() else {
        return Err(InstructionError::TooFewAccounts {
            min: 4,
            found: ix.accounts.len(),
        });
    };
    Ok(TransferChecked {
        token_program: ix.program_id,
        source: *source,
        mint: *mint,
        destination: *destination,
        authority: *authority,
        multisig_signers: signers.to_vec(),
        amount,
        decimals,
    })
}

/// SPL Memo (v3, `MemoSq4…`): the data is the memo, UTF-8; any accounts are signers it checks.
pub fn memo<'a>(ix: &ResolvedInstruction<'a>) -> Result<&'a str, InstructionError> {
    expect_program(&ix.program_id, &MEMO_PROGRAM, "Memo")?;
    std::str::from_utf8(ix.data).map_err(|_| InstructionError::MemoNotUtf8)
}

/// A Lighthouse assertion that may ride along a payment, decoded to its instruction and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LighthouseGuard {
    /// The instruction's discriminator (5–10: account info, mint and token account assertions).
    pub kind: u8,
    /// The one account it asserts on.
    pub target: Pubkey,
}

/// Lighthouse instructions by discriminator (borsh enum index of `lighthouse-program` 2.0, the
/// deployed layout): 0 MemoryWrite, 1 MemoryClose, 2 AssertAccountData, 3 …DataMulti,
/// 4 AssertAccountDelta, 5 AssertAccountInfo, 6 …InfoMulti, 7 AssertMintAccount, 8 …Multi,
/// 9 AssertTokenAccount, 10 …Multi, 11–14 stake and upgradeable-loader account assertions,
/// 15 AssertSysvarClock, 16 AssertMerkleTreeAccount, 17 AssertBubblegumTreeConfigAccount.
fn lighthouse_name(discriminator: u8) -> &'static str {
    match discriminator {
        0 => "MemoryWrite",
        1 => "MemoryClose",
        2..=4 => "AssertAccountData/Delta",
        11..=14 => "stake or loader account assertion",
        15 => "AssertSysvarClock",
        16 | 17 => "tree account assertion",
        _ => "instruction (unknown discriminator)",
    }
}

/// The account assertions wallets inject (Phantom, Solflare: account info, mint and token
/// account checks, digest §5.5), and nothing else:
/// - discriminators 5–10 only. MemoryWrite/MemoryClose take a paying signer and can copy any
///   account (the Clock included) for later asserts; AssertSysvarClock passes simulation and
///   fails a slot later, so the fee payer pays for a transfer that never happens (docs/solana.md §4.1);
///   raw-data and delta assertions can read the Clock or any other sysvar's bytes; the program
///   is upgradeable, so an unknown discriminator is refused, not ignored;
/// - exactly one account, which the caller checks is the payer's own (see `verify`): never a
///   sysvar, never our fee payer, never an account other traffic moves;
/// - a log level (byte 1) that exists (0–6) and an assertion payload present. A malformed
///   payload fails deterministically, in simulation as on chain, so it costs us nothing.
pub fn lighthouse(ix: &ResolvedInstruction<'_>) -> Result<LighthouseGuard, InstructionError> {
    expect_program(&ix.program_id, &LIGHTHOUSE_PROGRAM, "Lighthouse")?;
    let [kind, log_level, _assertion, ..] = ix.data else {
        return Err(InstructionError::WrongInstruction("Lighthouse assertion"));
    };
    if !(5..=10).contains(kind) {
        return Err(InstructionError::LighthouseRefused(lighthouse_name(*kind)));
    }
    if *log_level > 6 || ix.data.len() > 256 {
        return Err(InstructionError::WrongInstruction("Lighthouse assertion"));
    }
    let [target] = ix.accounts.as_slice() else {
        return Err(InstructionError::AccountCount {
            expected: 1,
            found: ix.accounts.len(),
        });
    };
    Ok(LighthouseGuard {
        kind: *kind,
        target: *target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemes::svm::keys::{SYSTEM_PROGRAM, associated_token_address};
    use crate::schemes::svm::wire;
    use crate::schemes::svm::wire::tests::{
        ALT_TX, CLIENT, DESTINATION_ATA, DEVNET_USDC, PAY_TO, SOURCE_ATA, V0_TX, pk,
    };

    fn message(text: &str) -> VersionedMessage {
        wire::from_base64(text).expect("fixture decodes").message
    }

    fn key(n: u8) -> Pubkey {
        Pubkey::new_from_array([n; 32])
    }

    fn ix<'a>(program: Pubkey, accounts: &[Pubkey], data: &'a [u8]) -> ResolvedInstruction<'a> {
        ResolvedInstruction {
            program_id: program,
            accounts: accounts.to_vec(),
            data,
        }
    }

    #[test]
    fn kit_fixture_instructions_parse() {
        let message = message(V0_TX);
        let at = |i| resolve(&message, i).expect("static accounts only");
        assert_eq!(compute_unit_limit(&at(0)), Ok(20_000));
        assert_eq!(compute_unit_price(&at(1)), Ok(1));
        let transfer = transfer_checked(&at(2)).expect("transfer");
        assert_eq!(
            transfer,
            TransferChecked {
                token_program: TOKEN_PROGRAM,
                source: pk(SOURCE_ATA),
                mint: pk(DEVNET_USDC),
                destination: pk(DESTINATION_ATA),
                authority: pk(CLIENT),
                multisig_signers: vec![],
                amount: 10_000,
                decimals: 6,
            }
        );
        let mint = pk(DEVNET_USDC);
        assert_eq!(
            transfer.destination,
            associated_token_address(&pk(PAY_TO), &mint, &TOKEN_PROGRAM)
        );
        assert_eq!(
            transfer.source,
            associated_token_address(&pk(CLIENT), &mint, &TOKEN_PROGRAM)
        );
        assert_eq!(memo(&at(3)), Ok("x402 fixture 0123456789abcdef"));
        // Each reader refuses the others' instructions.
        assert_eq!(
            compute_unit_price(&at(0)),
            Err(InstructionError::WrongInstruction("SetComputeUnitPrice"))
        );
        assert!(matches!(
            memo(&at(2)),
            Err(InstructionError::WrongProgram {
                expected: "Memo",
                ..
            })
        ));
        assert_eq!(
            resolve(&message, 4),
            Err(InstructionError::NoSuchInstruction(4))
        );
    }

    #[test]
    fn accounts_from_lookup_tables_do_not_resolve() {
        let message = message(ALT_TX);
        assert!(resolve(&message, 0).is_ok());
        // TransferChecked's accounts are [2, 7, 6, 1]: the mint (7) comes from the table.
        assert_eq!(
            resolve(&message, 2),
            Err(InstructionError::LookupTableAccount(7))
        );
    }

    #[test]
    fn compute_budget_layouts_are_exact() {
        let cb = COMPUTE_BUDGET_PROGRAM;
        assert_eq!(
            compute_unit_limit(&ix(cb, &[], &[2, 0xff, 0xff, 0xff, 0xff])),
            Ok(u32::MAX)
        );
        use InstructionError::*;
        for bad in [&[2, 0x20, 0x4e, 0][..], &[2, 0x20, 0x4e, 0, 0, 0], &[]] {
            assert!(compute_unit_limit(&ix(cb, &[], bad)).is_err(), "{bad:?}");
        }
        // RequestHeapFrame (1) and SetLoadedAccountsDataSizeLimit (4) are other instructions.
        assert_eq!(
            compute_unit_limit(&ix(cb, &[], &[1, 0, 0, 1, 0])),
            Err(WrongInstruction("SetComputeUnitLimit"))
        );
        assert_eq!(
            compute_unit_limit(&ix(cb, &[key(1)], &[2, 0x20, 0x4e, 0, 0])),
            Err(AccountCount {
                expected: 0,
                found: 1
            })
        );
        assert!(matches!(
            compute_unit_limit(&ix(MEMO_PROGRAM, &[], &[2, 0x20, 0x4e, 0, 0])),
            Err(WrongProgram {
                expected: "ComputeBudget",
                ..
            })
        ));
        let mut price = vec![3];
        price.extend_from_slice(&5_000_000u64.to_le_bytes());
        assert_eq!(compute_unit_price(&ix(cb, &[], &price)), Ok(5_000_000));
        for len in [8, 10] {
            let mut wrong = price.clone();
            wrong.resize(len, 0);
            assert!(compute_unit_price(&ix(cb, &[], &wrong)).is_err(), "{len}");
        }
    }

    fn transfer_data(amount: u64, decimals: u8) -> Vec<u8> {
        let mut data = vec![12];
        data.extend_from_slice(&amount.to_le_bytes());
        data.push(decimals);
        data
    }

    #[test]
    fn transfer_checked_layout_is_exact() {
        let accounts = [key(1), key(2), key(3), key(4)];
        let data = transfer_data(u64::MAX, 9);
        let parsed = transfer_checked(&ix(TOKEN_2022_PROGRAM, &accounts, &data)).expect("parses");
        assert_eq!(parsed.token_program, TOKEN_2022_PROGRAM);
        assert_eq!((parsed.amount, parsed.decimals), (u64::MAX, 9));
        let multisig = [key(1), key(2), key(3), key(4), key(5), key(6)];
        let parsed = transfer_checked(&ix(TOKEN_PROGRAM, &multisig, &data)).expect("parses");
        assert_eq!(parsed.multisig_signers, [key(5), key(6)]);
        use InstructionError::*;
        assert_eq!(
            transfer_checked(&ix(TOKEN_PROGRAM, &accounts[..3], &data)),
            Err(TooFewAccounts { min: 4, found: 3 })
        );
        assert!(transfer_checked(&ix(TOKEN_PROGRAM, &accounts, &data[..9])).is_err());
        // The official unpacker reads this as TransferChecked and ignores the extra byte.
        let mut longer = data.clone();
        longer.push(0);
        assert!(matches!(
            TokenInstruction::unpack(&longer),
            Ok(TokenInstruction::TransferChecked { .. })
        ));
        assert_eq!(
            transfer_checked(&ix(TOKEN_PROGRAM, &accounts, &longer)),
            Err(DataLength {
                expected: 10,
                found: 11
            })
        );
        let mut plain = vec![3];
        plain.extend_from_slice(&5u64.to_le_bytes());
        assert_eq!(
            transfer_checked(&ix(TOKEN_PROGRAM, &accounts, &plain)),
            Err(WrongInstruction("TransferChecked"))
        );
        assert!(matches!(
            transfer_checked(&ix(SYSTEM_PROGRAM, &accounts, &data)),
            Err(WrongProgram { .. })
        ));
    }

    #[test]
    fn memo_is_utf8_on_the_v3_program() {
        assert_eq!(
            memo(&ix(MEMO_PROGRAM, &[key(1)], "héllo ✓".as_bytes())),
            Ok("héllo ✓")
        );
        assert_eq!(
            memo(&ix(MEMO_PROGRAM, &[], &[b'a', 0xff])),
            Err(InstructionError::MemoNotUtf8)
        );
        let memo_v1 = spl_memo_interface::v1::ID;
        assert!(matches!(
            memo(&ix(memo_v1, &[], b"hi")),
            Err(InstructionError::WrongProgram { .. })
        ));
    }

    #[test]
    fn lighthouse_allows_only_account_assertions_on_one_target() {
        let lh = LIGHTHOUSE_PROGRAM;
        // Phantom's guard: AssertAccountInfoMulti, log 4, one KnownOwner == System assertion.
        assert_eq!(
            lighthouse(&ix(lh, &[key(1)], &[6, 4, 1, 3, 0, 0])),
            Ok(LighthouseGuard {
                kind: 6,
                target: key(1)
            })
        );
        // AssertSysvarClock Slot < x: needs no account, passes simulation, fails on landing.
        let mut clock = vec![15, 0, 0];
        clock.extend_from_slice(&123u64.to_le_bytes());
        clock.push(3);
        assert_eq!(
            lighthouse(&ix(lh, &[], &clock)),
            Err(InstructionError::LighthouseRefused("AssertSysvarClock"))
        );
        for kind in [0u8, 1, 2, 3, 4, 11, 14, 16, 17, 18, 255] {
            assert!(
                matches!(
                    lighthouse(&ix(lh, &[key(1)], &[kind, 0, 0, 0])),
                    Err(InstructionError::LighthouseRefused(_))
                ),
                "{kind}"
            );
        }
        assert!(lighthouse(&ix(lh, &[], &[9, 0, 2, 0])).is_err());
        assert!(lighthouse(&ix(lh, &[key(1), key(2)], &[9, 0, 2, 0])).is_err());
        assert!(lighthouse(&ix(lh, &[key(1)], &[9, 7, 2, 0])).is_err());
        assert!(lighthouse(&ix(lh, &[key(1)], &[9, 0])).is_err());
        assert!(lighthouse(&ix(lh, &[key(1)], &[])).is_err());
        assert!(lighthouse(&ix(MEMO_PROGRAM, &[key(1)], &[9, 0, 2, 0])).is_err());
    }
}
