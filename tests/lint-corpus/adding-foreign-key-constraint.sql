-- rule: adding-foreign-key-constraint (squawk docs: adding-foreign-key-constraint, https://squawkhq.com/docs/adding-foreign-key-constraint)
-- Validating the new foreign key scans orders while holding a SHARE ROW EXCLUSIVE lock on
-- both orders and users: writes to both tables wait.
ALTER TABLE orders
    ADD CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);
