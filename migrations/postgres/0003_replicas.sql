-- Identical replicas that all settle (issue #11).
--
-- Each process says it is alive here, as often as it renews its signer leases; replicas count
-- each other from it to take a fair share of every network's keys.
CREATE TABLE replicas (
    holder        TEXT PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);

-- A claimed payment handed to a replica that holds a key for its network: queued when
-- `handoff_at` is set (the claim's lease given up), taken by a key holder with
-- FOR UPDATE SKIP LOCKED, finished by `handoff_deadline` (the original request's deadline).
ALTER TABLE settlements ADD COLUMN handoff_at BIGINT;
ALTER TABLE settlements ADD COLUMN handoff_deadline BIGINT;
CREATE INDEX settlements_handoffs ON settlements (handoff_at)
    WHERE state = 'claimed' AND handoff_at IS NOT NULL;

-- Rows from before payment-identifier scopes existed: their scope is payer|payee, so that a
-- retry with the id finds its stored answer after the upgrade.
UPDATE settlements SET payment_scope = lower(payer) || '|' || lower(pay_to)
    WHERE payment_id IS NOT NULL AND payment_scope IS NULL;
