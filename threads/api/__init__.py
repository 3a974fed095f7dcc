"""The REST API of threads: projects, threads, messages, events, compactions, warming and
the steering queue (validate → one service → serialize). Imports threads and common."""
