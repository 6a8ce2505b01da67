//! Typed parsing of the instructions the exact scheme inspects (digest §5.1, §5.5):
//! ComputeBudget SetComputeUnitLimit / SetComputeUnitPrice, SPL Token and Token-2022
//! TransferChecked, Memo, and the Associated Token program's CreateIdempotent. Each parser checks
//! the program id, the exact data layout and the account count, and says what is wrong otherwise;
//! comparing the values with the payment requirements is the verifier's job.

use super::keys::{
    ASSOCIATED_TOKEN_PROGRAM, COMPUTE_BUDGET_PROGRAM, MEMO_PROGRAM, Pubkey, TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
};
use super::wire::Message;

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
    #[error("instruction data is empty")]
    EmptyData,
    #[error("instruction discriminator is {found}; expected {expected}")]
    WrongDiscriminator { expected: u8, found: u8 },
    #[error("instruction data is {found} bytes; expected {expected}")]
    DataLength { expected: usize, found: usize },
    #[error("instruction has {found} accounts; expected {expected}")]
    AccountCount { expected: usize, found: usize },
    #[error("instruction has {found} accounts; expected at least {min}")]
    TooFewAccounts { min: usize, found: usize },
    #[error("memo is not valid UTF-8")]
    MemoNotUtf8,
}

/// An instruction of a message with its indexes replaced by keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedInstruction<'a> {
    pub program_id: Pubkey,
    pub accounts: Vec<Pubkey>,
    pub data: &'a [u8],
}

impl ResolvedInstruction<'_> {
    /// Parses this instruction as `T`.
    pub fn parse<T: ParseInstruction>(&self) -> Result<T, InstructionError> {
        T::parse(&self.program_id, &self.accounts, self.data)
    }
}

/// Instruction `index` of `message` with its keys. Accounts loaded from a lookup table have no
/// key without the table, so they are an error here (digest §5.5: unresolvable tables are
/// rejected).
pub fn resolve(
    message: &Message,
    index: usize,
) -> Result<ResolvedInstruction<'_>, InstructionError> {
    let ix = message
        .instructions()
        .get(index)
        .ok_or(InstructionError::NoSuchInstruction(index))?;
    let key = |i: u8| {
        message
            .account_key(usize::from(i))
            .copied()
            .ok_or(InstructionError::LookupTableAccount(i))
    };
    Ok(ResolvedInstruction {
        // Decoding checked that program ids are static keys; the error path is for completeness.
        program_id: key(ix.program_id_index)?,
        accounts: ix
            .accounts
            .iter()
            .map(|&i| key(i))
            .collect::<Result<_, _>>()?,
        data: &ix.data,
    })
}

/// An instruction type that can be read from its program id, accounts and data.
pub trait ParseInstruction: Sized {
    fn parse(
        program_id: &Pubkey,
        accounts: &[Pubkey],
        data: &[u8],
    ) -> Result<Self, InstructionError>;
}

/// ComputeBudget `SetComputeUnitLimit`: data `[2, u32 LE units]`, no accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetComputeUnitLimit {
    pub units: u32,
}

/// ComputeBudget `SetComputeUnitPrice`: data `[3, u64 LE micro-lamports per CU]`, no accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetComputeUnitPrice {
    pub micro_lamports: u64,
}

const SET_COMPUTE_UNIT_LIMIT: u8 = 2;
const SET_COMPUTE_UNIT_PRICE: u8 = 3;

impl ParseInstruction for SetComputeUnitLimit {
    fn parse(
        program_id: &Pubkey,
        accounts: &[Pubkey],
        data: &[u8],
    ) -> Result<Self, InstructionError> {
        let body = compute_budget_body(program_id, accounts, data, SET_COMPUTE_UNIT_LIMIT)?;
        let units = fixed::<4>(body)?;
        Ok(Self {
            units: u32::from_le_bytes(units),
        })
    }
}

impl ParseInstruction for SetComputeUnitPrice {
    fn parse(
        program_id: &Pubkey,
        accounts: &[Pubkey],
        data: &[u8],
    ) -> Result<Self, InstructionError> {
        let body = compute_budget_body(program_id, accounts, data, SET_COMPUTE_UNIT_PRICE)?;
        let price = fixed::<8>(body)?;
        Ok(Self {
            micro_lamports: u64::from_le_bytes(price),
        })
    }
}

/// The ComputeBudget program reads no accounts; an instruction naming some is not one a wallet
/// builds, and would only lock (or smuggle in) accounts.
fn compute_budget_body<'d>(
    program_id: &Pubkey,
    accounts: &[Pubkey],
    data: &'d [u8],
    discriminator: u8,
) -> Result<&'d [u8], InstructionError> {
    expect_program(program_id, &COMPUTE_BUDGET_PROGRAM, "ComputeBudget")?;
    let body = body_after(data, discriminator)?;
    if !accounts.is_empty() {
        return Err(InstructionError::AccountCount {
            expected: 0,
            found: accounts.len(),
        });
    }
    Ok(body)
}

/// The two SPL token programs; a mint belongs to exactly one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProgram {
    Token,
    Token2022,
}

impl TokenProgram {
    pub fn from_id(program_id: &Pubkey) -> Option<Self> {
        match *program_id {
            TOKEN_PROGRAM => Some(Self::Token),
            TOKEN_2022_PROGRAM => Some(Self::Token2022),
            _ => None,
        }
    }

    pub fn id(self) -> Pubkey {
        match self {
            Self::Token => TOKEN_PROGRAM,
            Self::Token2022 => TOKEN_2022_PROGRAM,
        }
    }
}

/// SPL Token / Token-2022 `TransferChecked`: data `[12, u64 LE amount, u8 decimals]`, accounts
/// `[source, mint, destination, authority, ...multisig signers]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferChecked {
    pub token_program: TokenProgram,
    pub source: Pubkey,
    pub mint: Pubkey,
    pub destination: Pubkey,
    pub authority: Pubkey,
    /// Present when `authority` is an SPL multisig account.
    pub multisig_signers: Vec<Pubkey>,
    pub amount: u64,
    pub decimals: u8,
}

const TRANSFER_CHECKED: u8 = 12;

impl ParseInstruction for TransferChecked {
    /// The token programs ignore bytes after `decimals`; this parser does not, since no client
    /// writes them and the exact scheme wants the one canonical layout.
    fn parse(
        program_id: &Pubkey,
        accounts: &[Pubkey],
        data: &[u8],
    ) -> Result<Self, InstructionError> {
        let token_program =
            TokenProgram::from_id(program_id).ok_or(InstructionError::WrongProgram {
                expected: "Token or Token-2022",
                found: *program_id,
            })?;
        let [amount @ .., decimals] = fixed::<9>(body_after(data, TRANSFER_CHECKED)?)?;
        let [source, mint, destination, authority, signers @ ..] = accounts else {
            return Err(InstructionError::TooFewAccounts {
                min: 4,
                found: accounts.len(),
            });
        };
        Ok(Self {
            token_program,
            source: *source,
            mint: *mint,
            destination: *destination,
            authority: *authority,
            multisig_signers: signers.to_vec(),
            amount: u64::from_le_bytes(amount),
            decimals,
        })
    }
}

/// SPL Memo (v2): the data is the memo, UTF-8; any accounts are signers the program checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memo {
    pub text: String,
    pub signers: Vec<Pubkey>,
}

impl ParseInstruction for Memo {
    fn parse(
        program_id: &Pubkey,
        accounts: &[Pubkey],
        data: &[u8],
    ) -> Result<Self, InstructionError> {
        expect_program(program_id, &MEMO_PROGRAM, "Memo")?;
        let text = std::str::from_utf8(data).map_err(|_| InstructionError::MemoNotUtf8)?;
        Ok(Self {
            text: text.to_owned(),
            signers: accounts.to_vec(),
        })
    }
}

/// Associated Token `CreateIdempotent`: data exactly `[1]`, accounts `[funder, associated
/// account, owner, mint, system program, token program]` (digest §5.5). Data `[]` or `[0]` is the
/// non-idempotent `Create` and is rejected (`EmptyData` / `WrongDiscriminator { found: 0 }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAssociatedTokenIdempotent {
    pub funder: Pubkey,
    pub associated_account: Pubkey,
    pub owner: Pubkey,
    pub mint: Pubkey,
    pub system_program: Pubkey,
    pub token_program: Pubkey,
}

const CREATE_IDEMPOTENT: u8 = 1;

impl ParseInstruction for CreateAssociatedTokenIdempotent {
    fn parse(
        program_id: &Pubkey,
        accounts: &[Pubkey],
        data: &[u8],
    ) -> Result<Self, InstructionError> {
        expect_program(program_id, &ASSOCIATED_TOKEN_PROGRAM, "Associated Token")?;
        fixed::<0>(body_after(data, CREATE_IDEMPOTENT)?)?;
        let &[
            funder,
            associated_account,
            owner,
            mint,
            system_program,
            token_program,
        ] = accounts
        else {
            return Err(InstructionError::AccountCount {
                expected: 6,
                found: accounts.len(),
            });
        };
        Ok(Self {
            funder,
            associated_account,
            owner,
            mint,
            system_program,
            token_program,
        })
    }
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

/// The data after a one-byte discriminator, which must be `discriminator`.
fn body_after(data: &[u8], discriminator: u8) -> Result<&[u8], InstructionError> {
    let (&first, body) = data.split_first().ok_or(InstructionError::EmptyData)?;
    if first != discriminator {
        return Err(InstructionError::WrongDiscriminator {
            expected: discriminator,
            found: first,
        });
    }
    Ok(body)
}

/// Exactly `N` bytes of body; the error counts the discriminator so it matches the data length.
fn fixed<const N: usize>(body: &[u8]) -> Result<[u8; N], InstructionError> {
    body.try_into().map_err(|_| InstructionError::DataLength {
        expected: N + 1,
        found: body.len() + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemes::svm::keys::{SYSTEM_PROGRAM, associated_token_address};
    use crate::schemes::svm::wire::VersionedTransaction;
    use crate::schemes::svm::wire::tests::{
        ALT_TX, CLIENT, DESTINATION_ATA, DEVNET_USDC, PAY_TO, SOURCE_ATA, V0_TX, pk,
    };

    fn message(text: &str) -> Message {
        VersionedTransaction::from_base64(text)
            .expect("fixture decodes")
            .message()
            .clone()
    }

    fn key(n: u8) -> Pubkey {
        Pubkey([n; 32])
    }

    #[test]
    fn kit_fixture_instructions_parse() {
        let message = message(V0_TX);
        let ix = |i| resolve(&message, i).expect("static accounts only");

        assert_eq!(
            ix(0).parse::<SetComputeUnitLimit>(),
            Ok(SetComputeUnitLimit { units: 20_000 })
        );
        assert_eq!(
            ix(1).parse::<SetComputeUnitPrice>(),
            Ok(SetComputeUnitPrice { micro_lamports: 1 })
        );
        let transfer = ix(2).parse::<TransferChecked>().expect("transfer");
        assert_eq!(
            transfer,
            TransferChecked {
                token_program: TokenProgram::Token,
                source: pk(SOURCE_ATA),
                mint: pk(DEVNET_USDC),
                destination: pk(DESTINATION_ATA),
                authority: pk(CLIENT),
                multisig_signers: vec![],
                amount: 10_000,
                decimals: 6,
            }
        );
        // kit derived both ATAs; so does keys::associated_token_address.
        let mint = pk(DEVNET_USDC);
        assert_eq!(
            transfer.destination,
            associated_token_address(&pk(PAY_TO), &mint, &TOKEN_PROGRAM)
        );
        assert_eq!(
            transfer.source,
            associated_token_address(&pk(CLIENT), &mint, &TOKEN_PROGRAM)
        );
        assert_eq!(
            ix(3).parse::<Memo>(),
            Ok(Memo {
                text: "x402 fixture 0123456789abcdef".into(),
                signers: vec![],
            })
        );

        // Each parser refuses the others' instructions.
        assert!(matches!(
            ix(0).parse::<SetComputeUnitPrice>(),
            Err(InstructionError::WrongDiscriminator {
                expected: 3,
                found: 2
            })
        ));
        assert!(matches!(
            ix(2).parse::<Memo>(),
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
    fn compute_unit_limit() {
        let parse = |program: &Pubkey, accounts: &[Pubkey], data: &[u8]| {
            SetComputeUnitLimit::parse(program, accounts, data)
        };
        let cb = COMPUTE_BUDGET_PROGRAM;
        assert_eq!(
            parse(&cb, &[], &[2, 0xff, 0xff, 0xff, 0xff]),
            Ok(SetComputeUnitLimit { units: u32::MAX })
        );
        use InstructionError::*;
        assert_eq!(
            parse(&cb, &[], &[2, 0x20, 0x4e, 0]),
            Err(DataLength {
                expected: 5,
                found: 4
            })
        );
        assert_eq!(
            parse(&cb, &[], &[2, 0x20, 0x4e, 0, 0, 0]),
            Err(DataLength {
                expected: 5,
                found: 6
            })
        );
        assert_eq!(parse(&cb, &[], &[]), Err(EmptyData));
        // RequestHeapFrame (1) and SetLoadedAccountsDataSizeLimit (4) are other instructions.
        assert_eq!(
            parse(&cb, &[], &[1, 0, 0, 1, 0]),
            Err(WrongDiscriminator {
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            parse(&cb, &[key(1)], &[2, 0x20, 0x4e, 0, 0]),
            Err(AccountCount {
                expected: 0,
                found: 1
            })
        );
        assert_eq!(
            parse(&MEMO_PROGRAM, &[], &[2, 0x20, 0x4e, 0, 0]),
            Err(WrongProgram {
                expected: "ComputeBudget",
                found: MEMO_PROGRAM
            })
        );
    }

    #[test]
    fn compute_unit_price() {
        let cb = COMPUTE_BUDGET_PROGRAM;
        let mut data = vec![3];
        data.extend_from_slice(&5_000_000u64.to_le_bytes());
        assert_eq!(
            SetComputeUnitPrice::parse(&cb, &[], &data),
            Ok(SetComputeUnitPrice {
                micro_lamports: 5_000_000
            })
        );
        use InstructionError::*;
        for (len, found) in [(8, 8), (10, 10)] {
            let mut wrong = data.clone();
            wrong.resize(len, 0);
            assert_eq!(
                SetComputeUnitPrice::parse(&cb, &[], &wrong),
                Err(DataLength { expected: 9, found })
            );
        }
        // The discriminator is checked before the length.
        assert_eq!(
            SetComputeUnitPrice::parse(&cb, &[], &[2, 0x20, 0x4e, 0, 0]),
            Err(WrongDiscriminator {
                expected: 3,
                found: 2
            })
        );
        assert_eq!(
            SetComputeUnitPrice::parse(&TOKEN_PROGRAM, &[], &data),
            Err(WrongProgram {
                expected: "ComputeBudget",
                found: TOKEN_PROGRAM
            })
        );
    }

    fn transfer_data(amount: u64, decimals: u8) -> Vec<u8> {
        let mut data = vec![12];
        data.extend_from_slice(&amount.to_le_bytes());
        data.push(decimals);
        data
    }

    #[test]
    fn transfer_checked() {
        let accounts = [key(1), key(2), key(3), key(4)];
        let data = transfer_data(u64::MAX, 9);
        let parsed = TransferChecked::parse(&TOKEN_2022_PROGRAM, &accounts, &data).expect("parses");
        assert_eq!(parsed.token_program, TokenProgram::Token2022);
        assert_eq!(
            (
                parsed.source,
                parsed.mint,
                parsed.destination,
                parsed.authority
            ),
            (key(1), key(2), key(3), key(4))
        );
        assert_eq!((parsed.amount, parsed.decimals), (u64::MAX, 9));
        assert!(parsed.multisig_signers.is_empty());

        // A multisig authority: its signers follow.
        let multisig = [key(1), key(2), key(3), key(4), key(5), key(6)];
        let parsed = TransferChecked::parse(&TOKEN_PROGRAM, &multisig, &data).expect("parses");
        assert_eq!(parsed.multisig_signers, [key(5), key(6)]);
        assert_eq!(parsed.token_program, TokenProgram::Token);

        use InstructionError::*;
        assert_eq!(
            TransferChecked::parse(&TOKEN_PROGRAM, &accounts[..3], &data),
            Err(TooFewAccounts { min: 4, found: 3 })
        );
        assert_eq!(
            TransferChecked::parse(&TOKEN_PROGRAM, &accounts, &data[..9]),
            Err(DataLength {
                expected: 10,
                found: 9
            })
        );
        let mut longer = data.clone();
        longer.push(0);
        assert_eq!(
            TransferChecked::parse(&TOKEN_PROGRAM, &accounts, &longer),
            Err(DataLength {
                expected: 10,
                found: 11
            })
        );
        // Plain Transfer (3) carries no mint or decimals.
        let mut transfer = vec![3];
        transfer.extend_from_slice(&5u64.to_le_bytes());
        assert_eq!(
            TransferChecked::parse(&TOKEN_PROGRAM, &accounts[..3], &transfer),
            Err(WrongDiscriminator {
                expected: 12,
                found: 3
            })
        );
        assert_eq!(
            TransferChecked::parse(&TOKEN_PROGRAM, &accounts, &[]),
            Err(EmptyData)
        );
        assert_eq!(
            TransferChecked::parse(&SYSTEM_PROGRAM, &accounts, &data),
            Err(WrongProgram {
                expected: "Token or Token-2022",
                found: SYSTEM_PROGRAM
            })
        );
        assert_eq!(
            DataLength {
                expected: 10,
                found: 9
            }
            .to_string(),
            "instruction data is 9 bytes; expected 10"
        );
    }

    #[test]
    fn token_program_ids() {
        for program in [TokenProgram::Token, TokenProgram::Token2022] {
            assert_eq!(TokenProgram::from_id(&program.id()), Some(program));
        }
        assert_eq!(TokenProgram::from_id(&ASSOCIATED_TOKEN_PROGRAM), None);
    }

    #[test]
    fn memo() {
        assert_eq!(
            Memo::parse(&MEMO_PROGRAM, &[key(1)], "héllo ✓".as_bytes()),
            Ok(Memo {
                text: "héllo ✓".into(),
                signers: vec![key(1)],
            })
        );
        assert_eq!(
            Memo::parse(&MEMO_PROGRAM, &[], b""),
            Ok(Memo {
                text: String::new(),
                signers: vec![],
            })
        );
        assert_eq!(
            Memo::parse(&MEMO_PROGRAM, &[], &[b'a', 0xff]),
            Err(InstructionError::MemoNotUtf8)
        );
        // Memo v1 is a different program.
        let memo_v1 = pk("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo");
        assert_eq!(
            Memo::parse(&memo_v1, &[], b"hi"),
            Err(InstructionError::WrongProgram {
                expected: "Memo",
                found: memo_v1
            })
        );
    }

    #[test]
    fn create_associated_token_idempotent() {
        let accounts = [
            key(1),
            key(2),
            key(3),
            key(4),
            SYSTEM_PROGRAM,
            TOKEN_PROGRAM,
        ];
        let ata = ASSOCIATED_TOKEN_PROGRAM;
        assert_eq!(
            CreateAssociatedTokenIdempotent::parse(&ata, &accounts, &[1]),
            Ok(CreateAssociatedTokenIdempotent {
                funder: key(1),
                associated_account: key(2),
                owner: key(3),
                mint: key(4),
                system_program: SYSTEM_PROGRAM,
                token_program: TOKEN_PROGRAM,
            })
        );
        use InstructionError::*;
        // Data [] and [0] are the non-idempotent Create; [2] is RecoverNested.
        assert_eq!(
            CreateAssociatedTokenIdempotent::parse(&ata, &accounts, &[]),
            Err(EmptyData)
        );
        for found in [0, 2] {
            assert_eq!(
                CreateAssociatedTokenIdempotent::parse(&ata, &accounts, &[found]),
                Err(WrongDiscriminator { expected: 1, found })
            );
        }
        assert_eq!(
            CreateAssociatedTokenIdempotent::parse(&ata, &accounts, &[1, 0]),
            Err(DataLength {
                expected: 1,
                found: 2
            })
        );
        assert_eq!(
            CreateAssociatedTokenIdempotent::parse(&ata, &accounts[..5], &[1]),
            Err(AccountCount {
                expected: 6,
                found: 5
            })
        );
        let seven = [&accounts[..], &[key(7)]].concat();
        assert_eq!(
            CreateAssociatedTokenIdempotent::parse(&ata, &seven, &[1]),
            Err(AccountCount {
                expected: 6,
                found: 7
            })
        );
        assert_eq!(
            CreateAssociatedTokenIdempotent::parse(&TOKEN_PROGRAM, &accounts, &[1]),
            Err(WrongProgram {
                expected: "Associated Token",
                found: TOKEN_PROGRAM
            })
        );
    }
}
