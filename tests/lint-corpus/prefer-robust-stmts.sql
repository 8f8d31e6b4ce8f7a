-- rule: prefer-robust-stmts (squawk docs: prefer-robust-stmts, https://squawkhq.com/docs/prefer-robust-stmts)
-- manifest: transaction = "none"
-- Outside a transaction a failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind,
-- and the retry fails on the name: use IF NOT EXISTS (and drop an invalid leftover).
CREATE INDEX CONCURRENTLY users_created_at_idx ON users (created_at);
