"""The threads app's admin: tenancy, threads, their trail and the conversation (compactions,
the steering queue). It imports threads and common only, never sessions_app or handoffs."""

from threads.admin import conversation, tenancy, threads, trail  # noqa: F401  (registers them)
