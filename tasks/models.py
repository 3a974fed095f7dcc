"""No models: schedules live in django-celery-beat's tables."""
