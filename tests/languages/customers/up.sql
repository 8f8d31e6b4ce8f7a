-- Customers, seeded with 5,000 rows whose e-mail addresses are in every possible state of
-- untidiness: the first revision of every language's backfill project (tests/e2e/languages.rs).
-- Portable between PostgreSQL and SQLite. It has no `email_norm`: each backfill adds that
-- column itself, as the README's example once did (its SQL revision now makes it, for MySQL).
CREATE TABLE customers (
    id    BIGINT PRIMARY KEY,
    name  TEXT NOT NULL,
    email TEXT NOT NULL
);

INSERT INTO customers (id, name, email)
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
SELECT i,
       'Customer ' || i,
       CASE i % 3
           WHEN 0 THEN '  Customer' || i || '@Example.COM '
           WHEN 1 THEN 'CUSTOMER' || i || '@EXAMPLE.com'
           ELSE 'customer' || i || '@example.com'
       END
FROM n;
