//! Abuse budgets, shared by every replica through the ledger: fee spend per UTC day per
//! network, per API key, per payer and per payee, and a payer's failed landings.
//!
//! A settle reserves `fee_per_settle` on every counter that applies when it claims a new
//! payment, before anything is signed; the reservation is given back when the settle ends
//! without having recorded a transaction. Because each counter takes the amount only while it
//! stays under its cap (one conditional upsert, all counters in one transaction), N replicas
//! stop at the same total one replica would. The reservation belongs to the attempt's claim
//! (`ledger::Hold`): only its owner gives it back, an attempt that takes the payment over
//! adopts it, and recording a transaction or releasing the claim spends or returns it in the
//! same ledger transaction.

use std::collections::HashMap;

use super::Refused;
use super::keys::Caller;
use super::policy::reasons;
use super::settings::{NetworkBudget, nano_units};
use crate::ledger::{BudgetLine, ClaimToken, Hold, Reservation, SharedLedger, now_ms, utc_day};
use crate::scheme::{PaymentMeta, Rejection};

#[derive(Debug, Clone, Default)]
struct Caps {
    fee: i64,
    daily: Option<i64>,
    per_key: Option<i64>,
    per_payer: Option<i64>,
    per_pay_to: Option<i64>,
    failed_limit: Option<u32>,
    failed_window_ms: i64,
}

/// What a settle holds until it knows whether it spent anything: the payment's note of the
/// reservation, owned by this attempt's claim (none when nothing was reserved). The note says
/// what it charged, so giving it back needs nothing else.
#[must_use = "a reservation is kept or given back"]
#[derive(Debug, Clone, Default)]
pub struct Held {
    hold: Option<Hold>,
}

pub struct Budgets {
    ledger: SharedLedger,
    networks: HashMap<String, Caps>,
}

impl Budgets {
    /// `networks`: (slug, CAIP-2 id, budget).
    pub fn new<'a>(
        ledger: SharedLedger,
        networks: impl IntoIterator<Item = (&'a str, &'a str, &'a NetworkBudget)>,
    ) -> Result<Self, String> {
        let mut caps = HashMap::new();
        for (slug, id, b) in networks {
            let at = |k: &str, v: &Option<String>| {
                v.as_deref()
                    .map(|t| nano_units(t).map_err(|e| format!("networks.{slug}.budget.{k}: {e}")))
                    .transpose()
            };
            let c = Caps {
                fee: at("fee_per_settle", &b.fee_per_settle)?.unwrap_or(0),
                daily: at("daily_cap", &b.daily_cap)?,
                per_key: at("per_key_daily", &b.per_key_daily)?,
                per_payer: at("per_payer_daily", &b.per_payer_daily)?,
                per_pay_to: at("per_pay_to_daily", &b.per_pay_to_daily)?,
                failed_limit: b.failed_landings_per_payer.filter(|n| *n > 0),
                failed_window_ms: i64::try_from(b.failed_landing_window_secs.max(1))
                    .unwrap_or(i64::MAX / 1000)
                    .saturating_mul(1000),
            };
            let capped = c.daily.or(c.per_key).or(c.per_payer).or(c.per_pay_to);
            if capped.is_some() && c.fee <= 0 {
                return Err(format!(
                    "networks.{slug}.budget: a daily cap needs fee_per_settle (what one settle counts as)"
                ));
            }
            caps.insert(id.to_string(), c);
        }
        Ok(Budgets {
            ledger,
            networks: caps,
        })
    }

    fn lines(&self, caps: &Caps, meta: &PaymentMeta, caller: &Caller, day: i64) -> Vec<BudgetLine> {
        let network = meta.network.as_str().to_string();
        let line = |kind: &'static str, subject: String, cap: i64| BudgetLine {
            network: network.clone(),
            kind,
            subject,
            period: day,
            cap,
        };
        let mut lines = Vec::new();
        if let Some(cap) = caps.daily {
            lines.push(line("network", String::new(), cap));
        }
        if let (Some(cap), Some(key)) = (caps.per_key, &caller.key_id) {
            lines.push(line("key", key.clone(), cap));
        }
        if let Some(cap) = caps.per_payer {
            lines.push(line("payer", meta.payer.to_ascii_lowercase(), cap));
        }
        if let Some(cap) = caps.per_pay_to {
            lines.push(line("pay_to", meta.pay_to.to_ascii_lowercase(), cap));
        }
        lines
    }

    /// Refuses a payer with too many failed landings, then reserves one settle's fee on every
    /// counter that applies, or refuses with the budget that has no room left. Called where
    /// gas would be spent (before signing), never on `/verify`: both read the ledger. `claim`
    /// is the token under which this attempt holds the payment: the reservation's owner.
    pub async fn reserve(
        &self,
        meta: &PaymentMeta,
        caller: &Caller,
        claim: &ClaimToken,
    ) -> Result<Held, Refused> {
        let Some(caps) = self.networks.get(meta.network.as_str()) else {
            return Ok(Held::default());
        };
        self.refuse_failing(meta).await?;
        let day = utc_day(now_ms());
        let lines = self.lines(caps, meta, caller, day);
        if lines.is_empty() || caps.fee <= 0 {
            return Ok(Held::default());
        }
        let hold = Hold {
            replay_key: meta.replay_key.clone(),
            network: meta.network.as_str().to_string(),
            owner: claim.clone(),
            period: day,
        };
        match self.ledger.reserve(&lines, caps.fee, &hold).await? {
            Reservation::Reserved => Ok(Held { hold: Some(hold) }),
            Reservation::Adopted => {
                tracing::info!(
                    replay_key = %meta.replay_key,
                    "adopted the budget reservation of an earlier attempt that never ended"
                );
                Ok(Held { hold: Some(hold) })
            }
            Reservation::Superseded => {
                // Its record will be refused: the new holder spends or gives back the fee.
                tracing::info!(
                    replay_key = %meta.replay_key,
                    "the payment was taken over before this attempt reserved its fee"
                );
                Ok(Held::default())
            }
            Reservation::Exhausted { kind, spent } => Err(Refused::Reject(Rejection::new(
                reasons::BUDGET_EXHAUSTED,
            )
            .with_message(format!(
                "today's {} fee budget on {} is spent ({spent} nano-units); try again tomorrow (UTC)",
                match kind {
                    "network" => "network-wide",
                    "key" => "API key's",
                    "payer" => "payer's",
                    _ => "payee's",
                },
                meta.network
            ))
            .with_payer(meta.payer.clone()))),
        }
    }

    /// Gives a reservation back (the settle sent nothing), if it is still this attempt's.
    pub async fn refund(&self, held: Held) {
        let Some(hold) = &held.hold else { return };
        if let Err(e) = self.ledger.refund(hold).await {
            tracing::warn!(error = %e, "cannot give a budget reservation back");
        }
    }

    /// Keeps a reservation (the settle recorded a transaction: the fee is spent).
    pub async fn keep(&self, held: Held) {
        let Some(hold) = &held.hold else { return };
        if let Err(e) = self.ledger.keep(hold).await {
            tracing::warn!(error = %e, "cannot note a budget reservation as spent");
        }
    }

    fn failed_line(&self, meta: &PaymentMeta) -> Option<(BudgetLine, u32)> {
        let caps = self.networks.get(meta.network.as_str())?;
        let limit = caps.failed_limit?;
        Some((
            BudgetLine {
                network: meta.network.as_str().to_string(),
                kind: "failed_landing",
                subject: meta.payer.to_ascii_lowercase(),
                period: now_ms() / caps.failed_window_ms,
                cap: i64::from(limit),
            },
            limit,
        ))
    }

    /// Refuses a payer whose payments kept failing on chain after passing simulation.
    async fn refuse_failing(&self, meta: &PaymentMeta) -> Result<(), Refused> {
        let Some((line, limit)) = self.failed_line(meta) else {
            return Ok(());
        };
        let failed = self.ledger.spent_on(&line).await?;
        if failed >= i64::from(limit) {
            return Err(Refused::Reject(
                Rejection::new(reasons::PAYER_FAILING)
                    .with_message(format!(
                        "{failed} payments from this payer failed on chain recently; refused for a while"
                    ))
                    .with_payer(meta.payer.clone()),
            ));
        }
        Ok(())
    }

    /// Counts a payment of ours that failed on chain after passing simulation.
    pub async fn landed_failed(&self, meta: &PaymentMeta) {
        if let Some((line, _)) = self.failed_line(meta)
            && let Err(e) = self.ledger.count(&line, 1).await
        {
            tracing::warn!(error = %e, "cannot count a failed landing");
        }
    }
}
