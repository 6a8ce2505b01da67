-- The money path, hardened (issue #10).
--
-- Every transaction ever recorded for a payment is kept with the request it performs: a fee
-- bump replaces a transaction at the same nonce, a re-claimed payment gets a new one, and any
-- of them may be the one the chain mines, so each must be judged against its own payment.
CREATE TABLE settlement_txs (
    tx_id        TEXT PRIMARY KEY,
    replay_key   TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    raw_tx       TEXT,
    signer       TEXT,
    request      TEXT NOT NULL,
    fingerprint  TEXT,
    recorded_at  BIGINT NOT NULL
);
CREATE INDEX settlement_txs_by_payment ON settlement_txs (replay_key, recorded_at);
INSERT INTO settlement_txs (tx_id, replay_key, attempt, raw_tx, signer, request, recorded_at)
    SELECT tx_id, replay_key, attempts, raw_tx, signer, request, updated_at
    FROM settlements WHERE tx_id IS NOT NULL;

-- What makes two requests the same payment (payload and core requirements, not the envelope),
-- and the scope a payment-identifier is unique in (payer and payee).
ALTER TABLE settlements ADD COLUMN fingerprint TEXT;
ALTER TABLE settlements ADD COLUMN payment_scope TEXT;
-- Where the settling transaction was included, and when that became final (past the reorg
-- depth); until then the row is watched.
ALTER TABLE settlements ADD COLUMN block_number BIGINT;
ALTER TABLE settlements ADD COLUMN block_hash TEXT;
ALTER TABLE settlements ADD COLUMN finalized_at BIGINT;
UPDATE settlements SET finalized_at = settled_at WHERE state = 'settled';

-- payment-identifier lives in the row it identifies: one live payment per id and scope, written
-- by the claim itself (so a /verify reserves nothing), answered from the settled row.
CREATE UNIQUE INDEX settlements_payment_id ON settlements (payment_scope, payment_id)
    WHERE payment_id IS NOT NULL AND state <> 'failed';
CREATE INDEX settlements_unfinal ON settlements (settled_at)
    WHERE state = 'settled' AND finalized_at IS NULL;
DROP TABLE payment_identifiers;
