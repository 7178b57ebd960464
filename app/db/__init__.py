"""Tables, engine and migrations. SQLite (WAL, foreign keys on) by default, PostgreSQL by URL."""
