"""Sessions of a thread and what grows from them: turns, spawns, summaries, interventions,
workspaces, capacity. Imports threads and common only; it tells handoffs through signals."""
