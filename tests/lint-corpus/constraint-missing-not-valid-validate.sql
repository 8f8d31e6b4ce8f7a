-- rule: constraint-missing-not-valid (squawk docs: constraint-missing-not-valid, its NOT VALID then VALIDATE, run in one per-migration transaction)
-- NOT VALID, then VALIDATE in the same transaction: the ACCESS EXCLUSIVE lock of the ADD
-- is still held while VALIDATE scans the table, which is what NOT VALID was meant to avoid.
ALTER TABLE order_lines
    ADD CONSTRAINT order_lines_price_positive CHECK (unit_price_cents > 0) NOT VALID;
ALTER TABLE order_lines VALIDATE CONSTRAINT order_lines_price_positive;
