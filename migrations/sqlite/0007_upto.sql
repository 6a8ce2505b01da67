-- upto (issue #14): the seller picks the charge at settle, up to what the payer signed.
-- `amount` is the charge (what the settling transaction moved once the row is settled; "0" for a
-- charge of nothing, settled with no transaction); `max_amount` is the signed maximum, NULL for
-- schemes that move exactly what was signed.
ALTER TABLE settlements ADD COLUMN max_amount TEXT;

-- An upto payment can only be sent from the key its witness names. Handed to another replica
-- (migration 3), it must reach the one holding that key's lease: `handoff_signer` is that
-- lease's key, NULL when any key of the network will do.
ALTER TABLE settlements ADD COLUMN handoff_signer TEXT;
