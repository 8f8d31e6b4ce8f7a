-- rule: ban-alter-domain-with-add-constraint (squawk docs: ban-alter-domain-with-add-constraint, https://squawkhq.com/docs/ban-alter-domain-with-add-constraint)
-- PostgreSQL checks the new domain constraint against every column of the domain, in
-- every table, with no NOT VALID escape that is safe to rely on.
ALTER DOMAIN postal_code ADD CONSTRAINT postal_code_format CHECK (VALUE ~ '^[0-9]{5}$');
