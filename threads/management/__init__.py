"""Management commands of threads (tenants, keys, the demo, flush and hydrate). Import
threads and common."""
