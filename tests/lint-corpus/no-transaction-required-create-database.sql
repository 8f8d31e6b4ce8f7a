-- rule: no-transaction-required (wasmig docs: commands.md, "Linting the revisions": CREATE DATABASE)
-- CREATE DATABASE cannot run inside a transaction block.
CREATE DATABASE reporting_replica;
