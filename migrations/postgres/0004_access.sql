-- Safe to expose to the internet (issue #12): API keys and cluster-wide abuse budgets.
--
-- A key is stored only as the SHA-256 of its token (tokens are 256 random bits, so a fast hash
-- is enough: there is nothing to brute-force); `prefix` is the token's first characters, shown
-- in listings so that an operator can tell keys apart. `scopes` and `pay_to` are
-- comma-separated; `pay_to` NULL means any payee. `revoked_at` set means the key no longer works.
CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    key_hash        TEXT NOT NULL UNIQUE,
    scopes          TEXT NOT NULL,
    pay_to          TEXT,
    rate_per_second BIGINT,
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT,
    replaces        TEXT
);

-- Spend counters shared by every replica: one row per (network, kind, subject, period).
-- kind: 'network' (subject ''), 'key', 'payer', 'pay_to' count reserved fees in nano-units of
-- the native coin (gwei, lamports) per UTC day; 'failed_landing' counts a payer's payments that
-- failed on chain after passing simulation, per window. A reservation is one conditional
-- upsert per row (`spent + x <= cap`), so two replicas can never overrun a cap together.
CREATE TABLE budget_counters (
    network TEXT NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,
    period  BIGINT NOT NULL,
    spent   BIGINT NOT NULL,
    PRIMARY KEY (network, kind, subject, period)
);
