-- rule: no-transaction-required (wasmig docs: commands.md, "Linting the revisions": REINDEX CONCURRENTLY)
-- REINDEX CONCURRENTLY of a bloated index cannot run inside a transaction block.
REINDEX INDEX CONCURRENTLY orders_user_id_idx;
