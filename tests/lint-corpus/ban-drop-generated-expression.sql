-- rule: ban-drop-generated-expression (squawk docs: ban-drop-generated-expression, https://squawkhq.com/docs/ban-drop-generated-expression)
-- The column stops being computed: new rows get NULL where readers expect a value.
ALTER TABLE order_lines ALTER COLUMN total_cents DROP EXPRESSION;
