-- rule: prefer-bigint-over-smallint (squawk docs: prefer-bigint-over-smallint, https://squawkhq.com/docs/prefer-bigint-over-smallint)
-- smallint tops out at 32767: a stock count that overflows later means a table rewrite.
ALTER TABLE products ADD COLUMN stock_count smallint;
