//! The payment-identifier extension's memory: one request fingerprint per id, and the settle
//! answer once it is final.

use super::{Ledger, LedgerError, Transition, now_ms};

/// The first sight of a payment-identifier, or what was stored for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentIdOutcome {
    New,
    Existing {
        request_hash: String,
        response: Option<String>,
    },
}

impl Ledger {
    pub async fn remember_payment_id(
        &self,
        id: &str,
        request_hash: &str,
    ) -> Result<PaymentIdOutcome, LedgerError> {
        let inserted = sqlx::query(
            "INSERT INTO payment_identifiers (id, request_hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(request_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if Transition::of(inserted).applied() {
            return Ok(PaymentIdOutcome::New);
        }
        let (request_hash, response): (String, Option<String>) =
            sqlx::query_as("SELECT request_hash, response FROM payment_identifiers WHERE id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        Ok(PaymentIdOutcome::Existing {
            request_hash,
            response,
        })
    }

    pub async fn store_payment_response(
        &self,
        id: &str,
        response: &str,
    ) -> Result<(), LedgerError> {
        sqlx::query("UPDATE payment_identifiers SET response = $2 WHERE id = $1")
            .bind(id)
            .bind(response)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
