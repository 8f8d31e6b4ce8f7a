-- rule: adding-foreign-key-constraint (squawk docs: adding-foreign-key-constraint; squawk's rule also covers ADD COLUMN ... REFERENCES)
-- A new column with an inline REFERENCES takes the same locks on both tables.
ALTER TABLE invoices ADD COLUMN customer_id bigint REFERENCES customers (id);
