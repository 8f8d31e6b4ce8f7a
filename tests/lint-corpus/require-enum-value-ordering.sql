-- rule: require-enum-value-ordering (squawk docs: require-enum-value-ordering, https://squawkhq.com/docs/require-enum-value-ordering)
-- ADD VALUE without BEFORE or AFTER appends the value, so ORDER BY status sorts it last.
ALTER TYPE order_status ADD VALUE 'refunded';
