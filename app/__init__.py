"""mvct-guide's shell: command line, HTTP service, database, files."""

__version__ = "0.1.0"
