"""Use cases. Each runs inside one database transaction owned by its caller."""
