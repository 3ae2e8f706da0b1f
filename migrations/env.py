"""Alembic environment: the URL comes from the caller's config or DATABASE_URL."""
import os

from alembic import context
from sqlalchemy import engine_from_config, pool

from db.models import Base
from db.session import normalize_url

config = context.config
target_metadata = Base.metadata

url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
if not url:
    raise RuntimeError("No database URL: set DATABASE_URL or pass sqlalchemy.url to alembic")
# ConfigParser reads % as interpolation: a URL-encoded password or socket path needs it doubled
config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                     poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
