-- rule: blocking-rewrite (PostgreSQL docs: ALTER TABLE ... SET TABLESPACE)
-- Moving a table to another tablespace copies it under an ACCESS EXCLUSIVE lock, a table
-- rewrite in all but name.
ALTER TABLE orders SET TABLESPACE fast_ssd;
