"""The REST API of sessions: turns, spawns, summaries, merges, interventions, sub-session
archives. Imports sessions_app, threads and common."""
