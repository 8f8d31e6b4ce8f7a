-- rule: no-transaction-required (wasmig docs: commands.md, "Linting the revisions": VACUUM)
-- A VACUUM after a large backfill: VACUUM cannot run inside a transaction block.
VACUUM (ANALYZE) orders;
