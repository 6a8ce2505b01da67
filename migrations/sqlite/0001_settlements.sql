-- One row per payment, keyed by its on-chain replay key (EVM: chain, asset, payer, EIP-3009 nonce).
-- The primary key is what makes a concurrent or replayed settle unable to claim a payment twice.
CREATE TABLE settlements (
    replay_key    TEXT PRIMARY KEY,
    network       TEXT NOT NULL,
    scheme        TEXT NOT NULL,
    x402_version  INTEGER NOT NULL,
    payer         TEXT NOT NULL,
    pay_to        TEXT NOT NULL,
    asset         TEXT NOT NULL,
    amount        TEXT NOT NULL,
    resource_url  TEXT,
    payment_id    TEXT,
    -- The facilitator request as received, so a reconciler can finish the payment without it.
    request       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('claimed', 'submitted', 'settled', 'failed')),
    -- Whoever holds the row: every transition by a holder names its token (a fencing token).
    claim_token   TEXT NOT NULL,
    tx_id         TEXT,
    -- The signed transaction, recorded before it is broadcast; resent verbatim if the chain lost it.
    raw_tx        TEXT,
    signer        TEXT,
    error_reason  TEXT,
    attempts      INTEGER NOT NULL DEFAULT 1,
    reconciles    INTEGER NOT NULL DEFAULT 0,
    -- The reconciler leaves a row alone until then (backoff while the chain has no answer).
    retry_at      INTEGER NOT NULL DEFAULT 0,
    -- 1 once a client was told `settlement_pending`: its retry is owed the final answer once.
    pending_reported INTEGER NOT NULL DEFAULT 0,
    lease_until   INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    settled_at    INTEGER,
    CHECK (state IN ('claimed', 'failed') OR tx_id IS NOT NULL)
);

CREATE INDEX settlements_tx_id ON settlements (tx_id);
CREATE INDEX settlements_unfinished ON settlements (lease_until) WHERE state IN ('claimed', 'submitted');
-- Receipts are looked up by address without regard to case (EVM checksums).
CREATE INDEX settlements_payer ON settlements (lower(payer), created_at);
CREATE INDEX settlements_pay_to ON settlements (lower(pay_to), created_at);
CREATE INDEX settlements_created ON settlements (created_at);

-- payment-identifier extension: one request fingerprint per id, and the settle answer once final.
CREATE TABLE payment_identifiers (
    id            TEXT PRIMARY KEY,
    request_hash  TEXT NOT NULL,
    response      TEXT,
    created_at    INTEGER NOT NULL
);

-- Which process may sign with which key. A replica settles only with keys it holds a live lease
-- on; the fence grows on every change of holder and is checked when a transaction is recorded.
CREATE TABLE signer_leases (
    signer        TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    fence         INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
