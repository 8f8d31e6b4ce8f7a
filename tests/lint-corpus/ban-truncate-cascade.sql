-- rule: ban-truncate-cascade (squawk docs: ban-truncate-cascade, https://squawkhq.com/docs/ban-truncate-cascade)
-- CASCADE also empties every table with a foreign key to this one, recursively: far more
-- than the author meant.
TRUNCATE TABLE accounts CASCADE;
