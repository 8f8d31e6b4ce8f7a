-- rule: no-transaction-required (wasmig docs: commands.md, "Linting the revisions": ALTER SYSTEM)
-- ALTER SYSTEM cannot run inside a transaction block.
ALTER SYSTEM SET maintenance_work_mem = '1GB';
