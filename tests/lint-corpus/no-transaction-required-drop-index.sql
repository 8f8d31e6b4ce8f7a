-- rule: no-transaction-required (wasmig docs: commands.md, "Linting the revisions": DROP INDEX CONCURRENTLY)
-- DROP INDEX CONCURRENTLY cannot run inside a transaction block.
DROP INDEX CONCURRENTLY IF EXISTS orders_legacy_status_idx;
