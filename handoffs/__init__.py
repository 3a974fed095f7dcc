"""Handoffs: a session passed to one recipient (single) or several (broadcast), rolled back
whole on failure. Imports sessions_app, threads and common; no room below imports it."""
