"""Handoffs and capacity (issue: sessions and handoffs)."""
