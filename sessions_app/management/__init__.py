"""Management commands of sessions (lock recovery). Import sessions_app and below."""
