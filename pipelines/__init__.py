"""Dagster definitions of the research pipeline (see definitions.py)."""
