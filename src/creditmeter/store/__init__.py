"""Storage: SQLAlchemy tables, repositories, migrations and engine set-up."""
