"""Celery tasks (thin: take ids, call services) and the periodic schedule."""
