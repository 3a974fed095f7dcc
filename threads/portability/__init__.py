"""Portable threads: export (document.py, export.py), import (sources.py reads the formats,
imports.py writes the thread) and the management commands' helpers.

May import common, threads' core, threads.storage and threads.conversation; nothing of
threads imports it but the API and the management commands."""
