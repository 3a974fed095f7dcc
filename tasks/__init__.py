"""Celery tasks (thin: take ids, call services) and the periodic schedule. The top room: it
imports the services of every other room; none of them imports it (they enqueue by name)."""
