//! What a mint's Token-2022 extensions (and the destination account's) would make the fee
//! payer sponsor, read once per account and cached for a while (docs/solana.md §4.2): a transfer hook runs
//! code of the mint's choosing and can pass simulation and fail on chain; a transfer fee
//! delivers less than the verified amount; a non-transferable mint never transfers; a pausable
//! mint can be paused between simulation and landing; a destination requiring memos refuses the
//! scheme's layout (memo after the transfer). Each is refused unless the network allows it.
//! The layouts are the official ones: `spl-token-2022-interface`'s `StateWithExtensions`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use solana_pubkey::Pubkey;
use solana_rpc_client_api::request::RpcRequest;
use spl_token_2022_interface::extension::memo_transfer::MemoTransfer;
use spl_token_2022_interface::extension::non_transferable::NonTransferable;
use spl_token_2022_interface::extension::pausable::PausableConfig;
use spl_token_2022_interface::extension::transfer_fee::TransferFeeConfig;
use spl_token_2022_interface::extension::transfer_hook::TransferHook;
use spl_token_2022_interface::extension::{BaseStateWithExtensions, StateWithExtensions};
use spl_token_2022_interface::state::{Account, Mint};

use super::keys::{TOKEN_2022_PROGRAM, TOKEN_PROGRAM};
use super::rpc::{RpcFailure, SolanaRpc};
use crate::scheme::Deadline;

/// Entries kept at most; past it expired ones go, then everything (a cache, not a ledger).
const MAX_ENTRIES: usize = 4096;

/// An extension the fee payer will not sponsor unless the network's
/// `allow_mint_extensions` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extension {
    TransferHook,
    TransferFee,
    NonTransferable,
    Pausable,
    MemoTransfer,
}

impl Extension {
    pub const ALL: [Extension; 5] = [
        Extension::TransferHook,
        Extension::TransferFee,
        Extension::NonTransferable,
        Extension::Pausable,
        Extension::MemoTransfer,
    ];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Extension::TransferHook => "transfer_hook",
            Extension::TransferFee => "transfer_fee",
            Extension::NonTransferable => "non_transferable",
            Extension::Pausable => "pausable",
            Extension::MemoTransfer => "memo_transfer",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// What one account says, as far as the exact scheme cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facts {
    /// No such account (yet).
    Missing,
    /// Owned by neither token program.
    NotToken(Pubkey),
    /// A token-program account and the extensions that would be refused, each with why.
    Token {
        owner: Pubkey,
        refusable: Vec<(Extension, String)>,
    },
    /// Owned by a token program but not the kind of account expected.
    Unreadable(String),
}

/// The refusable extensions of a mint (`is_mint`) or of a token account.
pub fn read_facts(owner: &Pubkey, data: &[u8], is_mint: bool) -> Facts {
    if *owner == TOKEN_PROGRAM {
        return Facts::Token {
            owner: *owner,
            refusable: Vec::new(),
        };
    }
    if *owner != TOKEN_2022_PROGRAM {
        return Facts::NotToken(*owner);
    }
    let mut refusable = Vec::new();
    if is_mint {
        let state = match StateWithExtensions::<Mint>::unpack(data) {
            Ok(state) => state,
            Err(e) => return Facts::Unreadable(format!("not a Token-2022 mint: {e}")),
        };
        if let Ok(hook) = state.get_extension::<TransferHook>() {
            // A hook authority can name a program at any time, inside the cache's TTL: only a
            // hook that is unset for good is nothing to refuse.
            let program = Option::<Pubkey>::from(hook.program_id);
            let authority = Option::<Pubkey>::from(hook.authority);
            match (program, authority) {
                (Some(program), _) => refusable.push((
                    Extension::TransferHook,
                    format!("the mint runs transfer hook program {program}"),
                )),
                (None, Some(authority)) => refusable.push((
                    Extension::TransferHook,
                    format!("the mint's authority {authority} can set a transfer hook"),
                )),
                (None, None) => {}
            }
        }
        if let Ok(fee) = state.get_extension::<TransferFeeConfig>() {
            let bps = [&fee.older_transfer_fee, &fee.newer_transfer_fee]
                .map(|f| u16::from(f.transfer_fee_basis_points));
            if bps.iter().any(|&b| b > 0) {
                refusable.push((
                    Extension::TransferFee,
                    format!(
                        "the mint charges a transfer fee ({} bps)",
                        bps[0].max(bps[1])
                    ),
                ));
            }
        }
        if state.get_extension::<NonTransferable>().is_ok() {
            refusable.push((
                Extension::NonTransferable,
                "the mint is non-transferable".into(),
            ));
        }
        if let Ok(pausable) = state.get_extension::<PausableConfig>() {
            let paused = bool::from(pausable.paused);
            refusable.push((
                Extension::Pausable,
                format!(
                    "the mint is pausable{}",
                    if paused { " and paused" } else { "" }
                ),
            ));
        }
    } else {
        let state = match StateWithExtensions::<Account>::unpack(data) {
            Ok(state) => state,
            Err(e) => return Facts::Unreadable(format!("not a Token-2022 account: {e}")),
        };
        if let Ok(memo) = state.get_extension::<MemoTransfer>()
            && bool::from(memo.require_incoming_transfer_memos)
        {
            refusable.push((
                Extension::MemoTransfer,
                "the destination requires a memo before each incoming transfer".into(),
            ));
        }
    }
    Facts::Token {
        owner: *owner,
        refusable,
    }
}

/// Whether a pausable mint is paused right now: allowed pausable mints are still refused while
/// paused (a payment that cannot land).
pub fn paused(data: &[u8]) -> bool {
    StateWithExtensions::<Mint>::unpack(data)
        .ok()
        .and_then(|s| {
            s.get_extension::<PausableConfig>()
                .ok()
                .map(|p| bool::from(p.paused))
        })
        .unwrap_or(false)
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub facts: Facts,
    pub paused: bool,
}

/// Account facts by address, each read once per `ttl`.
pub struct AccountCache {
    ttl: Duration,
    entries: Mutex<HashMap<Pubkey, (Instant, Entry)>>,
}

impl AccountCache {
    pub fn new(ttl: Duration) -> Self {
        AccountCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &Pubkey) -> Option<Entry> {
        let entries = self.entries.lock().ok()?;
        let (at, entry) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| entry.clone())
    }

    fn store(&self, key: Pubkey, entry: Entry) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), entry));
    }

    /// The facts of `address` (a mint when `is_mint`), from the cache or one `getAccountInfo`.
    pub async fn get(
        &self,
        rpc: &SolanaRpc,
        address: &Pubkey,
        is_mint: bool,
        deadline: Deadline,
    ) -> Result<Entry, RpcFailure> {
        if let Some(entry) = self.cached(address) {
            return Ok(entry);
        }
        // base64, not the client's default base64+zstd: the account is small, and the answer
        // is read under our body cap.
        let params =
            json!([address.to_string(), { "encoding": "base64", "commitment": "confirmed" }]);
        let answer: Value = rpc
            .read(deadline, |c| {
                let params = params.clone();
                Box::pin(async move { c.send(RpcRequest::GetAccountInfo, params).await })
            })
            .await?;
        let entry =
            parse_account_answer(&answer, is_mint).map_err(|message| RpcFailure::Transport {
                reached: true,
                message,
            })?;
        // Only what an account says is kept: "no such account (yet)" is not, or anyone who
        // names a mint before it exists would have it refused for a whole TTL.
        if matches!(entry.facts, Facts::Token { .. } | Facts::NotToken(_)) {
            self.store(*address, entry.clone());
        }
        Ok(entry)
    }
}

/// A `getAccountInfo` answer: `{context, value: null | {owner, data: [base64, "base64"]}}`.
fn parse_account_answer(answer: &Value, is_mint: bool) -> Result<Entry, String> {
    let Some(value) = answer.get("value") else {
        return Err("getAccountInfo: answer has no value".into());
    };
    if value.is_null() {
        return Ok(Entry {
            facts: Facts::Missing,
            paused: false,
        });
    }
    let owner: Pubkey = value["owner"]
        .as_str()
        .and_then(|o| o.parse().ok())
        .ok_or("getAccountInfo: no owner")?;
    let data = value["data"][0]
        .as_str()
        .filter(|_| value["data"][1] == "base64")
        .and_then(|d| STANDARD.decode(d).ok())
        .ok_or("getAccountInfo: data is not base64")?;
    Ok(Entry {
        facts: read_facts(&owner, &data, is_mint),
        paused: is_mint && owner == TOKEN_2022_PROGRAM && paused(&data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_token_mints_have_nothing_to_refuse() {
        let facts = read_facts(&TOKEN_PROGRAM, &[0u8; 82], true);
        assert_eq!(
            facts,
            Facts::Token {
                owner: TOKEN_PROGRAM,
                refusable: vec![]
            }
        );
        let stranger = Pubkey::new_from_array([9; 32]);
        assert_eq!(read_facts(&stranger, &[], true), Facts::NotToken(stranger));
        assert!(matches!(
            read_facts(&TOKEN_2022_PROGRAM, &[1, 2, 3], true),
            Facts::Unreadable(_)
        ));
    }

    #[test]
    fn extension_names_round_trip() {
        for e in Extension::ALL {
            assert_eq!(Extension::parse(e.name()), Some(e));
        }
        assert_eq!(Extension::parse("permanent_delegate"), None);
    }

    #[test]
    fn account_answers_without_a_value_are_faults() {
        assert!(parse_account_answer(&json!({}), true).is_err());
        assert!(matches!(
            parse_account_answer(&json!({"value": null}), true).map(|e| e.facts),
            Ok(Facts::Missing)
        ));
        let bad = json!({"value": {"owner": TOKEN_PROGRAM.to_string(), "data": ["!!", "base64"]}});
        assert!(parse_account_answer(&bad, true).is_err());
    }
}
