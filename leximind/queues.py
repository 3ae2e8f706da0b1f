"""Task and queue names: the contract between the web process (which enqueues by name) and the workers.

Kept free of heavy imports so the web app can use it without importing torch or the worker code.
"""

QUEUE_EXTRACT = "extract"        # CPU: bytes -> text
QUEUE_INFER = "infer"            # GPU: claim queued documents, run the model in batches
QUEUE_TRAIN = "train"            # GPU: training runs, one at a time
QUEUE_MAINTENANCE = "maintenance"  # sweeper, retention

TASK_EXTRACT = "leximind.extract_document"   # args: [document_id] or [[document_ids]]
TASK_INFER = "leximind.infer_wakeup"         # args: [] (a wake-up: the worker claims from Postgres)
TASK_TRAIN = "leximind.run_training"         # args: [training_run_id]
TASK_SWEEP = "leximind.sweep"                # args: []
TASK_RETENTION = "leximind.retention"        # args: [] (db/retention.py; a no-op unless a policy is set)

ALL_QUEUES = (QUEUE_EXTRACT, QUEUE_INFER, QUEUE_TRAIN, QUEUE_MAINTENANCE)
