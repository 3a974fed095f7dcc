"""The REST API of handoffs (single and broadcast). Imports handoffs, sessions_app, threads
and common."""
