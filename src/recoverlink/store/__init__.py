"""Persistence: SQLAlchemy Core schema, Alembic migrations and repository functions per record."""
