-- A payment's fee-budget reservation while it is neither spent nor given back (docs/access.md
-- §4): one row per payment (its replay key), replacing migration 4's `budget_counters` rows of
-- kind 'hold', which knew neither whose they were nor what they had charged.
--
-- `owner` is the claim token of the attempt the reservation belongs to. An attempt that takes
-- the payment over (the claim's lease ran out, a failed row claimed again) adopts it and
-- becomes its owner; only the owner gives it back, so an attempt that lost the payment cannot
-- take the next attempt's fee off the counters. Recording a transaction deletes the row in the
-- same transaction (the fee is spent); releasing a claim gives it back in the same transaction.
-- `period` (the UTC day), `amount` and `lines` (JSON: the [kind, subject] of every counter
-- charged) are what was charged, so that giving it back subtracts exactly that.
CREATE TABLE budget_holds (
    replay_key TEXT PRIMARY KEY,
    network    TEXT NOT NULL,
    owner      TEXT NOT NULL,
    period     BIGINT NOT NULL,
    amount     BIGINT NOT NULL,
    lines      TEXT NOT NULL
);
CREATE INDEX budget_holds_period ON budget_holds (period);

-- The old notes cannot be given back (whose, and on which counters?): dropped. Their fee stays
-- counted on its day, as for a payment that is never retried.
DELETE FROM budget_counters WHERE kind = 'hold';
