-- rule: ban-alter-identity (squawk docs: ban-alter-identity, https://squawkhq.com/docs/ban-alter-identity)
-- GENERATED ALWAYS refuses the explicit ids the running application (or a data copy job)
-- still inserts.
ALTER TABLE accounts ALTER COLUMN id SET GENERATED ALWAYS;
