-- rule: ban-char-field (squawk docs: ban-char-field, https://squawkhq.com/docs/ban-char-field)
-- char(n) pads with spaces and is no faster than text; changing its length later rewrites
-- the table.
CREATE TABLE countries (
    code char(2) PRIMARY KEY,
    name text NOT NULL
);
