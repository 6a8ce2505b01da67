//! API keys: the token format, its hash, the scopes, and a short-lived cache of lookups so that
//! a request costs no database round trip while a revocation still reaches every replica
//! within `auth.cache_ms`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::ledger::{LedgerError, SharedLedger, StoredKey};

/// What a key may do. An endpoint names the one scope it needs (see `http::access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Verify,
    Settle,
    Supported,
    Settlements,
    Discovery,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Verify,
        Scope::Settle,
        Scope::Supported,
        Scope::Settlements,
        Scope::Discovery,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Verify => "verify",
            Scope::Settle => "settle",
            Scope::Supported => "supported",
            Scope::Settlements => "settlements",
            Scope::Discovery => "discovery",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s.trim())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling, as far as the facilitator cares: anonymous (auth off), or a key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The key's id (never its token); `None` when auth is off.
    pub key_id: Option<String>,
    pub scopes: Vec<Scope>,
    /// Payees this caller may settle for; `None` = any.
    pub pay_to: Option<Vec<String>>,
    pub rate_per_second: Option<u32>,
}

impl Caller {
    pub fn anonymous() -> Self {
        Caller::default()
    }

    pub fn from_key(key: &StoredKey) -> Self {
        Caller {
            key_id: Some(key.id.clone()),
            scopes: key.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            pay_to: key.pay_to.clone(),
            rate_per_second: key.rate_per_second,
        }
    }

    /// The payees this caller is limited to (`None`: any).
    pub fn payees(&self) -> Option<&[String]> {
        self.pay_to.as_deref()
    }

    /// Whether this caller may settle for (or read receipts of) `pay_to`.
    pub fn may_pay(&self, pay_to: &str) -> bool {
        match &self.pay_to {
            None => true,
            Some(list) => list.iter().any(|p| same_address(p, pay_to)),
        }
    }
}

/// Addresses compared as chains write them: EVM hex in any case, others exactly (base58 is
/// case-sensitive).
pub fn same_address(a: &str, b: &str) -> bool {
    if a.starts_with("0x") || a.starts_with("0X") {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// The prefix of every token, so that leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "x402_";

/// A new token (256 bits from the OS generator, hex) and its id.
pub fn new_token() -> Result<(String, String), String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the OS: {e}"))?;
    let token = format!("{TOKEN_PREFIX}{}", hex(&bytes));
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok((token, format!("key_{}", hex(&id))))
}

/// What the ledger stores for a token. A fast hash is right here: tokens are random and long,
/// so there is no dictionary to try, and a slow hash would cost every request.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The part of a token shown in listings.
pub fn token_prefix(token: &str) -> String {
    token.chars().take(TOKEN_PREFIX.len() + 6).collect()
}

fn hex(bytes: &[u8]) -> String {
    alloy::hex::encode(bytes)
}

/// A presented token, hashed once per request: the cache and the ledger both look keys up by
/// this, so the gate hashes a token a single time however many lookups it makes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        TokenHash(hash_token(token))
    }
}

/// Lookups by token hash, each trusted for `ttl`; misses are cached too (a stranger cycling
/// bad tokens costs at most one query per token per `ttl`, and the cache is bounded).
pub struct KeyCache {
    ledger: SharedLedger,
    ttl: Duration,
    entries: Mutex<HashMap<TokenHash, (Instant, Option<StoredKey>)>>,
    live: Mutex<Option<(Instant, bool)>>,
}

/// Entries beyond this are dropped wholesale (cheaper than an LRU; refilled from the ledger).
const MAX_ENTRIES: usize = 10_000;

impl KeyCache {
    pub fn new(ledger: SharedLedger, ttl: Duration) -> Self {
        KeyCache {
            ledger,
            ttl,
            entries: Mutex::new(HashMap::new()),
            live: Mutex::new(None),
        }
    }

    /// Whether any key was ever created (auth switches on by itself when one is; revoking
    /// every key later does not switch it off).
    pub async fn any_created(&self) -> Result<bool, LedgerError> {
        if let Ok(live) = self.live.lock()
            && let Some((at, any)) = *live
            && at.elapsed() < self.ttl
        {
            return Ok(any);
        }
        let any = match self.ledger.keys_created().await {
            Ok(n) => n > 0,
            // A `true` never goes back (revoked keys still count), so it stays exact while the
            // ledger does not answer; a `false` might be out of date (another replica may have
            // created a key meanwhile), so it is not trusted past `ttl`: fail closed.
            Err(e) => match self.live.lock().ok().and_then(|l| *l) {
                Some((_, true)) => return Ok(true),
                _ => return Err(e),
            },
        };
        if let Ok(mut live) = self.live.lock() {
            *live = Some((Instant::now(), any));
        }
        Ok(any)
    }

    /// The last answer the ledger gave for this token, without asking it again, and whether
    /// that answer is still trusted (younger than `ttl`). A stale answer still decides which
    /// rate limit a request meets (a key seen live is limited as the key while the lookup that
    /// follows re-checks it), never whether the request is let in.
    pub fn peek(&self, hash: &TokenHash) -> Option<(Option<StoredKey>, bool)> {
        let entries = self.entries.lock().ok()?;
        let (at, key) = entries.get(hash)?;
        Some((key.clone(), at.elapsed() < self.ttl))
    }

    /// The live key with this token, if any.
    pub async fn lookup(&self, hash: &TokenHash) -> Result<Option<StoredKey>, LedgerError> {
        if let Ok(entries) = self.entries.lock()
            && let Some((at, key)) = entries.get(hash)
            && at.elapsed() < self.ttl
        {
            return Ok(key.clone());
        }
        let key = self.ledger.key_by_hash(&hash.0).await?;
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                // Misses first (a stranger cycling tokens fills the map with them), so that
                // live keys stay cached; everything stale after that.
                entries.retain(|_, (at, k)| k.is_some() && at.elapsed() < self.ttl);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(hash.clone(), (Instant::now(), key.clone()));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let (a, id_a) = new_token().expect("randomness");
        let (b, id_b) = new_token().expect("randomness");
        assert_ne!(a, b);
        assert_ne!(id_a, id_b);
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
        assert!(!hash_token(&a).contains(&a[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn scopes_and_payees() {
        assert_eq!(Scope::parse("settle"), Some(Scope::Settle));
        assert_eq!(Scope::parse("root"), None);
        let c = Caller {
            pay_to: Some(vec!["0xAbC".into(), "So1ana".into()]),
            ..Caller::default()
        };
        assert!(c.may_pay("0xabc"));
        assert!(c.may_pay("So1ana"));
        assert!(!c.may_pay("so1ana"));
        assert!(!c.may_pay("0xdef"));
        assert!(Caller::anonymous().may_pay("anything"));
    }
}
