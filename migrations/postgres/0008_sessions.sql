-- Sessions (src/sessions): sign-in proofs checked for sellers, and "has this wallet paid for
-- this resource?" answered from the settlements.
--
-- Single-use sign-in nonces, shared by every replica on this ledger. A nonce is claimed by one
-- INSERT that conflicts on the primary key, so two replicas checking the same proof at once
-- cannot both accept it. The key is a hash of (domain, address, nonce); a row may be taken
-- over only once it expired, i.e. once no proof carrying it can pass the age check any more.
CREATE TABLE session_nonces (
    nonce_key   TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX session_nonces_expiry ON session_nonces (expires_at);

-- The paid resource, normalised as discovery normalises it (origin + path), written with the
-- claim. Rows settled before this migration have none and entitle nobody.
ALTER TABLE settlements ADD COLUMN resource_key TEXT;
-- The entitlement lookup: one payer's settled payments for one resource, newest first.
CREATE INDEX settlements_entitlement ON settlements (resource_key, lower(payer), settled_at)
    WHERE state = 'settled';
