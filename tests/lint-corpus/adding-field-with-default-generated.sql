-- rule: adding-field-with-default (squawk docs: adding-field-with-default, "Adding a generated column")
-- A stored generated column is computed for every existing row: a table rewrite under an
-- ACCESS EXCLUSIVE lock.
ALTER TABLE order_lines
    ADD COLUMN total_cents bigint GENERATED ALWAYS AS (quantity * unit_price_cents) STORED;
