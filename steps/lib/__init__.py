"""Helpers shared by several steps (naming, safety rules, polling, RDS reads)."""
