"""Persistence of jobs, stream events and analyses (SQLite by default), via SQLAlchemy Core."""
