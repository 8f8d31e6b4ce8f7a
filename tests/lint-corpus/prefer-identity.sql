-- rule: prefer-identity (squawk docs: prefer-identity, https://squawkhq.com/docs/prefer-identity)
-- serial makes a sequence owned apart from the column: permissions, dumps and copies of
-- the table trip over it; GENERATED ... AS IDENTITY does not.
CREATE TABLE comments (
    id bigserial PRIMARY KEY,
    body text NOT NULL
);
