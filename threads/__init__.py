"""Tenancy, threads, their message history and audit trail (core); where messages live
(storage/); what keeps conversations cheap (conversation/); the API and the admin.

May import common, and of sessions_app only sessions_app.selectors."""
