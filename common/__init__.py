"""Cross-app plumbing: prefixed ids, domain errors and the REST API base classes.

Kept apart from the domain apps (as HackSoftware's styleguide keeps `common/`) so that
threads, sessions_app and handoffs all build on one tenant-scoping base and one error body.
"""
