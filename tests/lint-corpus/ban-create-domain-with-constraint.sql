-- rule: ban-create-domain-with-constraint (squawk docs: ban-create-domain-with-constraint, https://squawkhq.com/docs/ban-create-domain-with-constraint)
-- A domain's CHECK is later impossible to change without locking every table using it;
-- squawk asks for table CHECK constraints instead.
CREATE DOMAIN postal_code AS text CHECK (VALUE ~ '^[0-9]{5}(-[0-9]{4})?$');
