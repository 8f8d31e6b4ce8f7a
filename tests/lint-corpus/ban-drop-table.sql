-- rule: ban-drop-table (squawk docs: ban-drop-table, https://squawkhq.com/docs/ban-drop-table)
-- The running application still reads and writes the table.
DROP TABLE user_sessions;
