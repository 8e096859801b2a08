"""Stores: where sessions, dead letters and run metadata live (SQLite embedded, PostgreSQL)."""
