"""The worker process: `bench-worker` (cli), its settings and identity, the Celery task and the
records it saves (tasks, record_store)."""
