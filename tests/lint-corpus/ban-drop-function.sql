-- rule: ban-drop-function (squawk docs: ban-drop-function, https://squawkhq.com/docs/ban-drop-function)
-- The running application, triggers or defaults may still call it.
DROP FUNCTION normalize_email(text);
