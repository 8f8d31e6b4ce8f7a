-- rule: adding-serial-primary-key-field (squawk docs: adding-serial-primary-key-field, https://squawkhq.com/docs/adding-serial-primary-key-field)
-- Adding a primary key builds its index under an ACCESS EXCLUSIVE lock: reads and writes
-- wait for the whole build.
ALTER TABLE audit_events ADD CONSTRAINT audit_events_pkey PRIMARY KEY (id);
