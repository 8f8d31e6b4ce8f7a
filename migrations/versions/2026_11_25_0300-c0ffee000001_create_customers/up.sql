-- Customers, seeded with 5,000 rows whose e-mail addresses are in every possible state of
-- untidiness, and the columns the next two revisions fill. Portable between PostgreSQL,
-- MySQL/MariaDB and SQLite: `concat` rather than `||` (MySQL reads `||` as OR), `VARCHAR`
-- rather than `TEXT` (MySQL indexes only a prefix of `TEXT`), and digits multiplied out
-- rather than a deep recursive CTE (MySQL and MariaDB stop recursion at 1,000 rows).
CREATE TABLE customers (
    id          BIGINT PRIMARY KEY,
    name        VARCHAR(100) NOT NULL,
    email       VARCHAR(255) NOT NULL,
    -- Filled by c0ffee000002; unique, so a normalisation that merges two addresses fails.
    email_norm  VARCHAR(255) UNIQUE,
    -- JSON, set by c0ffee000003 with each database's own JSON functions.
    preferences VARCHAR(1000) NOT NULL DEFAULT '{}'
);

INSERT INTO customers (id, name, email)
WITH digit(d) AS (
         SELECT 0 UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
         UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8
         UNION ALL SELECT 9
     ),
     n(i) AS (
         SELECT 1 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d
         FROM digit a, digit b, digit c, digit e
     )
SELECT i,
       concat('Customer ', i),
       CASE i % 3
           WHEN 0 THEN concat('  Customer', i, '@Example.COM ')
           WHEN 1 THEN concat('CUSTOMER', i, '@EXAMPLE.com')
           ELSE concat('customer', i, '@example.com')
       END
FROM n
WHERE i <= 5000;
