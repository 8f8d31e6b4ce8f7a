-- rule: no-transaction-required (wasmig docs: commands.md, "Linting the revisions": DETACH PARTITION CONCURRENTLY)
-- DETACH PARTITION ... CONCURRENTLY cannot run inside a transaction block.
ALTER TABLE measurements DETACH PARTITION measurements_2022 CONCURRENTLY;
