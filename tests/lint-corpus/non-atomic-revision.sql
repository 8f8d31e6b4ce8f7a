-- rule: non-atomic-revision (wasmig docs: commands.md, "Linting the revisions"; transactions.md, "Failure states")
-- manifest: transaction = "none"
-- Two statements outside a transaction: if the second fails, the first stays built and the
-- revision is marked failed until `wasmig resolve`.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_status_idx ON orders (status);
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_shipped_at_idx ON orders (shipped_at);
