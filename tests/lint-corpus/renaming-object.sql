-- rule: renaming-object (squawk docs: renaming-object, https://squawkhq.com/docs/renaming-object)
-- A renamed view: every client and report selecting from the old name breaks.
ALTER VIEW active_customers RENAME TO current_customers;
