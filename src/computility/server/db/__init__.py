"""The control plane's database: one schema, SQLite (default) or PostgreSQL, migrated by Alembic."""
