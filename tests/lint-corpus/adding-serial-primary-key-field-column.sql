-- rule: adding-serial-primary-key-field (squawk docs: adding-serial-primary-key-field; squawk's rule also covers ADD COLUMN ... PRIMARY KEY)
-- A new serial primary key column: the table is rewritten to fill it and the index built,
-- all under an ACCESS EXCLUSIVE lock.
ALTER TABLE page_views ADD COLUMN id bigserial PRIMARY KEY;
