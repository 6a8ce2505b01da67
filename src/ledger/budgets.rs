//! Abuse budgets (migrations 4 and 9): fee counters every replica shares, so that a daily fee
//! cap is one cap for the whole cluster, and each payment's note of the reservation it holds.
//!
//! A budget reservation is one conditional upsert per counter inside one transaction: either
//! every counter takes the amount without passing its cap, or none does. The payment's note of
//! it (`budget_holds`) says whose it is (a claim token) and what it charged: it is spent with
//! the payment's recorded transaction, given back by its owner or with the released claim, and
//! adopted by the attempt that takes the payment over, each in one transaction.

use super::{ClaimToken, Ledger, LedgerError};

/// One counter a reservation must fit under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLine {
    pub network: String,
    pub kind: &'static str,
    pub subject: String,
    pub period: i64,
    pub cap: i64,
}

/// A payment's reservation note (`budget_holds`): the attempt it belongs to (its claim token)
/// and the UTC day its counters are charged on (every line's `period`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub replay_key: String,
    pub network: String,
    pub owner: ClaimToken,
    pub period: i64,
}

/// The UTC day of a time in Unix ms: the period of the daily fee counters and of their notes.
pub fn utc_day(ms: i64) -> i64 {
    ms / 86_400_000
}

/// A note as stored: network, period, amount, lines (`charged`).
type Note = (String, i64, i64, String);

/// What `adopt` found.
enum Found {
    Nothing,
    Adopted,
    Superseded,
}

/// The counters a reservation charges, as its note stores them: JSON [network, kind, subject].
fn charged(lines: &[BudgetLine]) -> String {
    // Built as a JSON value, whose text form cannot fail (no `expect` on serialising).
    let lines = lines
        .iter()
        .map(|l| {
            serde_json::Value::Array(vec![
                l.network.as_str().into(),
                l.kind.into(),
                l.subject.as_str().into(),
            ])
        })
        .collect();
    serde_json::Value::Array(lines).to_string()
}

/// Subtracts what a note charged from its counters (never below 0).
async fn give_back(
    db: &mut sqlx::Transaction<'_, sqlx::Any>,
    (_, period, amount, lines): Note,
) -> Result<(), LedgerError> {
    let lines: Vec<[String; 3]> = serde_json::from_str(&lines)
        .map_err(|e| LedgerError::Corrupt(format!("a budget note's lines: {e}")))?;
    for [network, kind, subject] in lines {
        sqlx::query(
            "UPDATE budget_counters SET spent = CASE WHEN spent > $5 THEN spent - $5 ELSE 0 END \
             WHERE network = $1 AND kind = $2 AND subject = $3 AND period = $4",
        )
        .bind(network)
        .bind(kind)
        .bind(subject)
        .bind(period)
        .bind(amount)
        .execute(&mut **db)
        .await?;
    }
    Ok(())
}

/// What a reservation did. `Exhausted` names the first counter that had no room.
#[must_use = "an exhausted budget means the work must be refused"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    /// The payment already held the same reservation (same day, counters and amount: an
    /// attempt that stopped, e.g. with a crash, before it could spend or give it back): it is
    /// this attempt's now, nothing was added again.
    Adopted,
    /// Another attempt holds the payment's claim, and its reservation: nothing was reserved
    /// for this one, which can no longer record a transaction, and it has nothing to give back.
    Superseded,
    Exhausted {
        kind: &'static str,
        spent: i64,
    },
}

impl Ledger {
    /// Adds `amount` to every line's counter, or to none if one would pass its cap, and notes
    /// the reservation under `hold` (the payment's row in `budget_holds`, written in the same
    /// transaction, with what it charged). When the payment already holds one — an earlier
    /// attempt stopped between reserving and spending or giving it back, e.g. killed — and this
    /// attempt holds the payment's claim, the note becomes this attempt's: adopted when it
    /// charged the same counters the same amount, nothing counted twice; otherwise given back
    /// and reserved again, so that what may be sent is counted where this attempt says.
    pub async fn reserve(
        &self,
        lines: &[BudgetLine],
        amount: i64,
        hold: &Hold,
    ) -> Result<Reservation, LedgerError> {
        if lines.is_empty() || amount <= 0 {
            return Ok(Reservation::Reserved);
        }
        let charged = charged(lines);
        // Twice: a note written by another attempt between our look and our insert is adopted
        // (or given back) on the second round.
        for _ in 0..2 {
            let mut db = self.pool.begin().await?;
            match Self::adopt(&mut db, hold, amount, &charged).await? {
                Found::Adopted => {
                    db.commit().await?;
                    return Ok(Reservation::Adopted);
                }
                // Dropped: rolls the ownership back.
                Found::Superseded => return Ok(Reservation::Superseded),
                Found::Nothing => {}
            }
            let noted = sqlx::query(
                "INSERT INTO budget_holds (replay_key, network, owner, period, amount, lines) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (replay_key) DO NOTHING",
            )
            .bind(&hold.replay_key)
            .bind(&hold.network)
            .bind(&hold.owner.0)
            .bind(hold.period)
            .bind(amount)
            .bind(&charged)
            .execute(&mut *db)
            .await?;
            if noted.rows_affected() == 1 {
                return self.take(db, lines, amount).await;
            }
        }
        Err(LedgerError::Corrupt(format!(
            "the budget reservation of {} keeps changing hands",
            hold.replay_key
        )))
    }

    /// Makes the payment's note, if it has one, this attempt's (`hold.owner`), provided the
    /// attempt holds the payment's claim. The note is locked first and the claim read after:
    /// a take-over committed in between is seen (each statement reads afresh), and the new
    /// holder's own adoption waits for this transaction, so the last owner is the holder.
    async fn adopt(
        db: &mut sqlx::Transaction<'_, sqlx::Any>,
        hold: &Hold,
        amount: i64,
        charged: &str,
    ) -> Result<Found, LedgerError> {
        let note: Option<Note> = sqlx::query_as(
            "UPDATE budget_holds SET owner = $2 WHERE replay_key = $1 \
             RETURNING network, period, amount, lines",
        )
        .bind(&hold.replay_key)
        .bind(&hold.owner.0)
        .fetch_optional(&mut **db)
        .await?;
        let Some(note) = note else {
            return Ok(Found::Nothing);
        };
        let holder: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM settlements WHERE replay_key = $1 AND claim_token = $2 \
             AND state IN ('claimed', 'submitted')",
        )
        .bind(&hold.replay_key)
        .bind(&hold.owner.0)
        .fetch_one(&mut **db)
        .await?;
        if holder == 0 {
            return Ok(Found::Superseded);
        }
        if (note.0.as_str(), note.1, note.2, note.3.as_str())
            == (hold.network.as_str(), hold.period, amount, charged)
        {
            return Ok(Found::Adopted);
        }
        // Another day, fee, API key or payee: what the stopped attempt charged goes back.
        sqlx::query("DELETE FROM budget_holds WHERE replay_key = $1")
            .bind(&hold.replay_key)
            .execute(&mut **db)
            .await?;
        give_back(db, note).await?;
        Ok(Found::Nothing)
    }

    /// Takes `amount` on every line under its cap, in `db` (which holds the new note), and
    /// commits; or rolls everything back and names the first line without room.
    async fn take(
        &self,
        mut db: sqlx::Transaction<'_, sqlx::Any>,
        lines: &[BudgetLine],
        amount: i64,
    ) -> Result<Reservation, LedgerError> {
        for line in lines {
            if amount > line.cap {
                return Ok(Reservation::Exhausted {
                    kind: line.kind,
                    spent: 0,
                });
            }
            let taken: Option<i64> = sqlx::query_scalar(
                "INSERT INTO budget_counters (network, kind, subject, period, spent) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (network, kind, subject, period) \
                 DO UPDATE SET spent = budget_counters.spent + excluded.spent \
                 WHERE budget_counters.spent + excluded.spent <= $6 RETURNING spent",
            )
            .bind(&line.network)
            .bind(line.kind)
            .bind(&line.subject)
            .bind(line.period)
            .bind(amount)
            .bind(line.cap)
            .fetch_optional(&mut *db)
            .await?;
            if taken.is_none() {
                // Rolls back the note and the lines already taken.
                drop(db);
                let spent = self.spent_on(line).await.unwrap_or(line.cap);
                return Ok(Reservation::Exhausted {
                    kind: line.kind,
                    spent,
                });
            }
        }
        db.commit().await?;
        Ok(Reservation::Reserved)
    }

    /// Gives back a reservation whose attempt sent nothing, if it is still this attempt's
    /// (`hold.owner`): what its note says it charged, once. A note adopted by a later attempt
    /// is that attempt's to spend or give back.
    pub async fn refund(&self, hold: &Hold) -> Result<(), LedgerError> {
        let mut db = self.pool.begin().await?;
        let note: Option<Note> = sqlx::query_as(
            "DELETE FROM budget_holds WHERE replay_key = $1 AND owner = $2 \
             RETURNING network, period, amount, lines",
        )
        .bind(&hold.replay_key)
        .bind(&hold.owner.0)
        .fetch_optional(&mut *db)
        .await?;
        if let Some(note) = note {
            give_back(&mut db, note).await?;
        }
        db.commit().await?;
        Ok(())
    }

    /// A reservation was spent without a transaction of its own attempt being recorded (a
    /// hand-off: the taker sends): its note goes if it is still this attempt's, the counters
    /// keep the amount. (Recording a transaction spends the note itself: `spend_hold`.)
    pub async fn keep(&self, hold: &Hold) -> Result<(), LedgerError> {
        sqlx::query("DELETE FROM budget_holds WHERE replay_key = $1 AND owner = $2")
            .bind(&hold.replay_key)
            .bind(&hold.owner.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A transaction of the payment is being recorded (in `db`): its reservation, whoever's,
    /// is spent, in the same transaction, so that no crash leaves a spent reservation to adopt.
    pub(super) async fn spend_hold(
        db: &mut sqlx::Transaction<'_, sqlx::Any>,
        replay_key: &str,
    ) -> Result<(), LedgerError> {
        sqlx::query("DELETE FROM budget_holds WHERE replay_key = $1")
            .bind(replay_key)
            .execute(&mut **db)
            .await?;
        Ok(())
    }

    /// The payment's claim is being deleted with nothing ever recorded under it (in `db`):
    /// nothing was sent, so its reservation, whoever's, is given back in the same transaction.
    pub(super) async fn release_hold(
        db: &mut sqlx::Transaction<'_, sqlx::Any>,
        replay_key: &str,
    ) -> Result<(), LedgerError> {
        let note: Option<Note> = sqlx::query_as(
            "DELETE FROM budget_holds WHERE replay_key = $1 RETURNING network, period, amount, lines",
        )
        .bind(replay_key)
        .fetch_optional(&mut **db)
        .await?;
        if let Some(note) = note {
            give_back(db, note).await?;
        }
        Ok(())
    }

    /// Forgets the notes of days before `period` (a payment never retried nor released):
    /// their fee stays counted on its day, and no later attempt adopts them.
    pub async fn prune_holds(&self, period: i64) -> Result<u64, LedgerError> {
        let done = sqlx::query("DELETE FROM budget_holds WHERE period < $1")
            .bind(period)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Adds to a counter that has no cap (e.g. failed landings), returning its new value.
    pub async fn count(&self, line: &BudgetLine, amount: i64) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO budget_counters (network, kind, subject, period, spent) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (network, kind, subject, period) \
             DO UPDATE SET spent = budget_counters.spent + excluded.spent RETURNING spent",
        )
        .bind(&line.network)
        .bind(line.kind)
        .bind(&line.subject)
        .bind(line.period)
        .bind(amount)
        .fetch_one(&self.pool)
        .await?)
    }

    /// A counter's current value (0 when it has none yet).
    pub async fn spent_on(&self, line: &BudgetLine) -> Result<i64, LedgerError> {
        let spent: Option<i64> = sqlx::query_scalar(
            "SELECT spent FROM budget_counters WHERE network = $1 AND kind = $2 \
             AND subject = $3 AND period = $4",
        )
        .bind(&line.network)
        .bind(line.kind)
        .bind(&line.subject)
        .bind(line.period)
        .fetch_optional(&self.pool)
        .await?;
        Ok(spent.unwrap_or(0))
    }

    /// Forgets counters of periods before `period` of `kind` (they can never matter again).
    pub async fn prune_counters(&self, kind: &str, before: i64) -> Result<u64, LedgerError> {
        let done = sqlx::query("DELETE FROM budget_counters WHERE kind = $1 AND period < $2")
            .bind(kind)
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
