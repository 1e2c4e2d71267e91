"""Tiny offline models for fast unit tests (never for quality claims)."""
