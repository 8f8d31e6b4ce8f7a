-- rule: ban-duplicate-column-assignments (squawk docs: ban-duplicate-column-assignments, https://squawkhq.com/docs/ban-duplicate-column-assignments)
-- A backfill that assigns the same column twice: PostgreSQL refuses it ("multiple
-- assignments to same column"), and the step fails at deploy time.
UPDATE subscriptions
SET status = 'active',
    renewed_at = now(),
    status = 'renewed'
WHERE renews_on <= current_date;
