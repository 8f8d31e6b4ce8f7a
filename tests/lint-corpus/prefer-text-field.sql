-- rule: prefer-text-field (squawk docs: prefer-text-field, https://squawkhq.com/docs/prefer-text-field)
-- Raising a varchar's limit later takes an ACCESS EXCLUSIVE lock; text with a CHECK on its
-- length does not.
CREATE TABLE profiles (
    user_id bigint PRIMARY KEY,
    display_name varchar(100) NOT NULL
);
