-- upto (issue #14): the seller picks the charge at settle, up to what the payer signed.
-- `amount` is the charge (what the settling transaction moved once the row is settled; "0" for a
-- charge of nothing, settled with no transaction); `max_amount` is the signed maximum, NULL for
-- schemes that move exactly what was signed.
ALTER TABLE settlements ADD COLUMN max_amount TEXT;
