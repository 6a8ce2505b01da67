-- A key at most one live payment may hold besides its replay key (issue #13): a seller's invoice
-- memo is paid once, even by two different transactions, across every replica. Failed rows
-- release it (a payment that did not happen may be paid again).
ALTER TABLE settlements ADD COLUMN exclusive_key TEXT;
CREATE UNIQUE INDEX settlements_exclusive_key ON settlements (exclusive_key)
    WHERE exclusive_key IS NOT NULL AND state <> 'failed';
