"""Prefect flows: compose tasks and decide routing; no domain logic here."""
