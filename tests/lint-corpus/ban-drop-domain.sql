-- rule: ban-drop-domain (squawk docs: ban-drop-domain, https://squawkhq.com/docs/ban-drop-domain)
-- Clients that cast to the domain, or functions declared with it, break.
DROP DOMAIN postal_code;
