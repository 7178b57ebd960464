"""mvct-guide's shell: command line, HTTP service, database, files."""
