"""Helpers for testing code built on Computility (and for Computility's own tests)."""
