-- rule: no-transaction-required (wasmig docs: commands.md, "Linting the revisions", wasmig's own rules)
-- CREATE INDEX CONCURRENTLY in a revision wasmig runs in its transaction
-- (transaction = "per-migration", the default): PostgreSQL refuses it and the step fails.
-- One statement: squawk's ban-concurrent-index-creation-in-transaction passes this.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_created_at_idx ON orders (created_at);
