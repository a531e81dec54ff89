"""Alembic environment: runs on the connection tradeloop.ops.migrate hands over."""

from alembic import context

from tradeloop.ops import challenger_models, identity_models, market_models  # noqa: F401  (their tables join Base.metadata)
from tradeloop.ops.database import VERSION_TABLE
from tradeloop.ops.models import Base

connection = context.config.attributes["connection"]
# a version table of our own (VERSION_TABLE): optuna keeps its own alembic_version in the same database
context.configure(
    connection=connection, target_metadata=Base.metadata, render_as_batch=True, version_table=VERSION_TABLE
)
with context.begin_transaction():
    context.run_migrations()
