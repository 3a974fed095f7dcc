"""Where a thread's messages live: the Redis hot cache, the cold store and its snapshot
format, flush/hydrate between them, and history pages read through them.

May import common, threads' core (models, locks, events, message_format) and
sessions_app.selectors; never threads.conversation, the API or the admin."""
