"""How Threadline is served: the one gunicorn configuration used by `make run`, the README's
production command, the benches and the tests (`gunicorn -c gunicorn.conf.py config.wsgi`).

Threaded workers (gthread): each worker's main loop accepts connections and waits for their
requests without holding a thread, so idle keep-alive connections and clients that have not
sent anything yet cost nothing; a thread serves one request at a time. Slow clients are
bounded at every step:
- no request bytes within 5 s of a connection being picked up → it goes back to the main loop
  (gunicorn's own rule), and an idle keep-alive connection is closed after `keepalive` s;
- headers not complete REQUEST_HEADER_TIMEOUT_SECONDS (10 s) after that → the connection is
  closed (config/gunicorn_worker.py);
- a body that has not fully arrived REQUEST_BODY_TIMEOUT_SECONDS (10 s) after its headers →
  408 `request_timeout`, connection closed (config/slowbody.py);
- `threads` per worker is well above what the CPUs can serve at once, so a few dozen such
  connections held at the same time leave threads for everyone else;
- cold-storage calls are capped per host (COLD_STORAGE_CONCURRENCY), so a hung S3 ties up at
  most that many threads, each for at most its fail-fast budget.

Why gthread and not the others: sync workers hold their one thread per slow or idle
connection (4 held connections stalled /healthz for ~30 s) and close after every response;
gevent would multiplex slow clients too, but needs monkey-patching and a greenlet-safe
database layer, and each greenlet would keep its own persistent PostgreSQL connection; an
ASGI worker (gasgi/uvicorn) would read bodies asynchronously, but Django runs the API's sync
views on a single thread per process under ASGI. gunicorn's maintainers advise a buffering
proxy against slow clients; gthread with the body deadline below holds without one.

Every value can be set from the environment (README, "Configuration").
"""

import os

bind = [os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gunicorn's gthread worker plus a deadline for headers (config/gunicorn_worker.py).
worker_class = "config.gunicorn_worker.ThreadWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
# gthread: connections a worker keeps at once (held, idle or being served).
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
# The arbiter restarts a worker whose main loop stopped answering for this long.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Header limits (gunicorn's defaults, stated): longer lines or more fields → 400.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# A worker is replaced after this many requests (0 = never), jittered so they do not all
# restart at once: bounds what a slow leak can grow to.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# X-Forwarded-* are trusted from the proxy addresses listed here only.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
