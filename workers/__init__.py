"""The job system's worker side: Celery app and thin tasks, extraction, the inference loop, the sweeper.

Importing this package is cheap; the model is loaded in each worker process at start (worker_process_init).
"""
