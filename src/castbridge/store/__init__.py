"""The store: SQLAlchemy models, migrations and the repository that holds every SQL statement."""
