-- rule: ban-set-schema (squawk docs: ban-set-schema, https://squawkhq.com/docs/ban-set-schema)
-- Moving the table to another schema: queries naming it through the search path stop
-- finding it.
ALTER TABLE invoices SET SCHEMA billing;
