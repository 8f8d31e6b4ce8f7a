-- rule: require-concurrent-index-creation (squawk docs: require-concurrent-index-creation, https://squawkhq.com/docs/require-concurrent-index-creation)
-- A plain CREATE INDEX blocks every write to orders for the length of the build.
CREATE INDEX orders_user_id_idx ON orders (user_id);
