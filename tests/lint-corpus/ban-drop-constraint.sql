-- rule: ban-drop-constraint (squawk docs: ban-drop-constraint, https://squawkhq.com/docs/ban-drop-constraint)
-- Dropping a constraint lets bad rows in at once, and adding it back later means a full
-- validation scan.
ALTER TABLE orders DROP CONSTRAINT orders_quantity_positive;
