-- rule: ban-drop-sequence (squawk docs: ban-drop-sequence, https://squawkhq.com/docs/ban-drop-sequence)
-- The application's nextval('invoice_number_seq') calls start failing.
DROP SEQUENCE invoice_number_seq;
