"""The operator console: the admin's dashboard, the Prometheus endpoint and the root page."""
