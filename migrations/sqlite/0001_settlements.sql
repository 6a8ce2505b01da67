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
    state         TEXT NOT NULL CHECK (state IN ('claimed', 'submitted', 'settled', 'failed')),
    tx_id         TEXT,
    signer        TEXT,
    error_reason  TEXT,
    attempts      INTEGER NOT NULL DEFAULT 1,
    lease_until   INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    CHECK (state IN ('claimed', 'failed') OR tx_id IS NOT NULL)
);

CREATE INDEX settlements_tx_id ON settlements (tx_id);
CREATE INDEX settlements_unfinished ON settlements (updated_at) WHERE state IN ('claimed', 'submitted');
