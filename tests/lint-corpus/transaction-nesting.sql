-- rule: transaction-nesting (squawk docs: transaction-nesting, https://squawkhq.com/docs/transaction-nesting)
-- wasmig already runs the revision in a transaction (transaction = "per-migration"): this
-- COMMIT ends it early, and the revision's record lands outside it.
BEGIN;
ALTER TABLE users ADD COLUMN locale text;
COMMIT;
