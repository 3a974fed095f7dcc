"""What keeps a long conversation cheap: compaction, prompt-cache warming, the steering
queue, the LLM providers and their retry schedule.

May import common, threads' core and threads.storage, and sessions_app.selectors; enqueues
Celery tasks by name (common.tasks), never importing tasks."""
