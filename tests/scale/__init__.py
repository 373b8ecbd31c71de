"""Several castbridge processes on one PostgreSQL: wake-ups, migrations, retention."""
