"""Cross-app plumbing: prefixed ids, domain errors, the REST API base classes, the admin's
shared helpers and enqueue-by-name. The lowest room: it imports nothing of the project
(annotations aside)."""
