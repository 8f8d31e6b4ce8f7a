-- rule: require-statement-timeout (squawk docs: require-statement-timeout, https://squawkhq.com/docs/require-statement-timeout)
-- timeouts: none
-- No statement_timeout (neither in the script nor in wasmig's [timeouts]): a VALIDATE on
-- a huge table may run for hours holding its lock.
SET lock_timeout = '1s';
ALTER TABLE order_lines VALIDATE CONSTRAINT order_lines_quantity_positive;
