-- rule: ban-drop-view (squawk docs: ban-drop-view, https://squawkhq.com/docs/ban-drop-view)
-- Dashboards and services reading the view fail at once.
DROP VIEW active_customers;
