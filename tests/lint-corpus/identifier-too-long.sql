-- rule: identifier-too-long (squawk docs: identifier-too-long, https://squawkhq.com/docs/identifier-too-long)
-- PostgreSQL silently truncates names to 63 bytes: the next migration that names this
-- table in full does not find it.
CREATE TABLE customer_notification_preferences_for_marketing_campaigns_by_region (
    id bigint PRIMARY KEY,
    region text NOT NULL
);
