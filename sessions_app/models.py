"""Sessions, sub-sessions, summaries and workspaces (issue: sessions and handoffs)."""
