"""Alembic's environment for the history store: runs the migrations on the connection the store hands over
(``config.attributes["connection"]``, inside the store's transaction and lock), version table
``edgeopt_alembic_version``.  Only programmatic use (``edgeopt.history.store``); there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from edgeopt.history.tables import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
