"""Alembic's environment for the 1M-row transform of `bench/run`: the online mode of the
generic env.py template, as in bench/gen.py's project; the URL from BENCH_ALEMBIC_URL. As in
the template, the run is ONE transaction (transaction_per_migration is off)."""

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)
config.set_main_option("sqlalchemy.url", os.environ["BENCH_ALEMBIC_URL"])

connectable = engine_from_config(
    config.get_section(config.config_ini_section, {}),
    prefix="sqlalchemy.",
    poolclass=pool.NullPool,
)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
