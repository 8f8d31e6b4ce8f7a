-- rule: prefer-bigint-over-int (squawk docs: prefer-bigint-over-int, https://squawkhq.com/docs/prefer-bigint-over-int)
-- An int id runs out at 2^31; widening it later rewrites the table and every referencing
-- table.
CREATE TABLE invoices (
    id integer PRIMARY KEY,
    customer_id bigint NOT NULL,
    total_cents bigint NOT NULL
);
