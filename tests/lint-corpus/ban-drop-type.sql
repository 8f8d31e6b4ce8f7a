-- rule: ban-drop-type (squawk docs: ban-drop-type, https://squawkhq.com/docs/ban-drop-type)
-- Clients casting to the type, and functions taking it, break.
DROP TYPE subscription_tier;
