-- rule: constraint-missing-not-valid (squawk docs: constraint-missing-not-valid, https://squawkhq.com/docs/constraint-missing-not-valid)
-- Adding a CHECK without NOT VALID scans every row under an ACCESS EXCLUSIVE lock; add it
-- NOT VALID, then VALIDATE CONSTRAINT in a later migration.
ALTER TABLE order_lines ADD CONSTRAINT order_lines_quantity_positive CHECK (quantity > 0);
