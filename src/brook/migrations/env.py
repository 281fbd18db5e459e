"""Alembic environment: migrations run against the URL Brook passes in (see brook.db.upgrade)."""

from alembic import context
from sqlalchemy import create_engine, pool

from brook.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "brook.db.upgrade sets sqlalchemy.url"
connectable = create_engine(url, poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
