"""The OpenAPI 3.1 description of /api/v1, written by hand (tests check it covers every API route)."""
from __future__ import annotations

from typing import Any

from webapp.api.helpers import MAX_ID

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/E{status}"} for status in statuses}


def _id_param(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": f"The {what}'s id.",
            "schema": {"type": "integer"}}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


NULLABLE_STR = {"type": ["string", "null"]}
NULLABLE_NUM = {"type": ["number", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}
TIMESTAMP = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
DOC_STATES = ["uploaded", "extracting", "queued", "processing", "done", "failed"]

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "description": "Stable, machine-readable reason."},
            "message": {"type": "string", "description": "What went wrong and what to do, in plain words."},
            "details": {"type": "object", "description": "Extra detail, e.g. `files`: each rejected file's problem."},
        }}},
    },
    "DocumentError": {
        "type": ["object", "null"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        "description": "Why a document failed (null unless its state is `failed`).",
    },
    "UploadAccepted": {
        "type": "object", "required": ["job_id", "documents"],
        "properties": {
            "job_id": {"type": "integer"}, "job_url": {"type": "string"},
            "documents": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "integer"}, "filename": {"type": "string"},
                "state": {"type": "string", "enum": DOC_STATES}}}},
        },
    },
    "Progress": {"type": "object", "required": ["total", "done", "failed"], "properties": {
        "total": {"type": "integer"}, "done": {"type": "integer"}, "failed": {"type": "integer"},
        "in_progress": {"type": "integer"}}},
    "Job": {
        "type": "object", "required": ["id", "state", "progress", "documents"],
        "properties": {
            "id": {"type": "integer"},
            "state": {"type": "string", "enum": ["queued", "processing", "done", "partial", "failed"],
                      "description": "`queued`: nothing picked up yet; `processing`: some documents unfinished; "
                                     "`done`: all succeeded; `partial`: all finished, some failed; "
                                     "`failed`: every document failed."},
            "created_at": TIMESTAMP,
            "progress": _ref("Progress"),
            "queue_position": {**NULLABLE_INT, "description": "Documents of other jobs ahead of this one."},
            "waiting_for_model": {"type": "boolean", "description":
                                  "Documents wait and no model is active yet (the starter model is training)."},
            "eta_seconds": {**NULLABLE_NUM, "description": "Estimate from measured throughput; null when unknown."},
            "throughput_per_second": NULLABLE_NUM,
            "documents": {"type": "array", "items": {"type": "object", "required": ["id", "state", "error"],
                                                     "properties": {
                "id": {"type": "integer"}, "filename": {"type": "string"},
                "state": {"type": "string", "enum": DOC_STATES}, "error": _ref("DocumentError"),
                "url": {"type": "string"}}}},
        },
    },
    "JobSummary": {"type": "object", "properties": {
        "id": {"type": "integer"}, "state": {"type": "string"}, "created_at": TIMESTAMP,
        "progress": _ref("Progress"), "url": {"type": "string"}}},
    "Result": {
        "type": "object", "required": ["summary", "topic", "emotions", "model_version"],
        "properties": {
            "id": {"type": "integer"},
            "summary": {"type": "string"},
            "topic": {"type": ["object", "null"], "properties": {
                "label": {"type": "string"}, "score": {"type": "number"},
                "scores": {"type": "object", "additionalProperties": {"type": "number"},
                           "description": "Probability of every topic."}}},
            "emotions": {"type": "array", "description": "The emotions over their thresholds.",
                         "items": {"type": "object", "properties": {
                             "label": {"type": "string"}, "score": {"type": "number"},
                             "threshold": {"type": "number"}}}},
            "emotion_scores": {"type": "array", "description": "Every emotion with score, threshold, selected.",
                               "items": {"type": "object"}},
            "model_version": {"type": "string"},
            "timings": {"type": "object", "additionalProperties": {"type": "number"},
                        "description": "Seconds per processing stage."},
            "created_at": TIMESTAMP,
        },
    },
    "Document": {
        "type": "object", "required": ["id", "filename", "state", "result"],
        "properties": {
            "id": {"type": "integer"}, "job_id": {"type": "integer"}, "filename": {"type": "string"},
            "title": NULLABLE_STR, "content_type": {"type": "string"}, "size_bytes": {"type": "integer"},
            "page_count": NULLABLE_INT, "state": {"type": "string", "enum": DOC_STATES},
            "error": _ref("DocumentError"), "created_at": TIMESTAMP, "finished_at": NULLABLE_TIMESTAMP,
            "result": {"oneOf": [_ref("Result"), {"type": "null"}], "description": "The latest result."},
            "earlier_results": {"type": "array", "items": _ref("Result"),
                                "description": "Results of older model versions, newest first."},
            "text": {"type": ["string", "null"], "description": "The extracted text (only with `?text=1`)."},
        },
    },
    "DocumentRow": {"type": "object", "properties": {
        "id": {"type": "integer"}, "job_id": {"type": "integer"}, "filename": {"type": "string"},
        "title": NULLABLE_STR, "state": {"type": "string"}, "error": _ref("DocumentError"),
        "size_bytes": {"type": "integer"}, "created_at": TIMESTAMP, "finished_at": NULLABLE_TIMESTAMP,
        "summary": NULLABLE_STR,
        "topic": {"type": ["object", "null"], "properties": {"label": {"type": "string"}, "score": {"type": "number"}}},
        "emotions": {"type": "array", "items": {"type": "string"}}, "model_version": NULLABLE_STR}},
    "DocumentPage": {"type": "object", "properties": {
        "documents": {"type": "array", "items": _ref("DocumentRow")},
        "total": {"type": "integer"},
        "total_capped": {"type": "boolean", "description": "true: there are more than `total`."},
        "next_cursor": NULLABLE_STR, "prev_cursor": NULLABLE_STR}},
    "Feedback": {"type": "object", "additionalProperties": False,
                 "description": "Give at least one of the three; any other field is a 400 naming it.", "properties": {
        "topic": {"type": "string", "description": "The right topic (one the model knows)."},
        "emotions": {"type": "array", "items": {"type": "string"}, "description": "The right set of emotions."},
        "summary": {"type": "string", "description": "A better summary."}}},
    "FeedbackStored": {"type": "object", "properties": {
        "id": {"type": "integer"}, "document_id": {"type": "integer"}, "topic": NULLABLE_STR,
        "emotions": {"type": ["array", "null"]}, "summary": NULLABLE_STR}},
    "TrainingRequest": {
        "type": "object", "additionalProperties": False,
        "description": "Flat fields, or the same settings in the shape a run's `params` has (`train.tasks`, "
                       "`train.learning_rate`, `train.mode`, `include_feedback`, `recipe`), so a run's params "
                       "can be sent back to start it again. Any other field is a 400 naming it; a setting given "
                       "both ways must agree. With the Topic task, a dataset none of whose topics the active "
                       "model's topic head has (AG News on a BBC-topic model) is a 400.",
        "properties": {
            "datasets": {"type": "array", "items": {"type": "string",
                                                    "enum": ["ag_news", "goemotions", "bbc", "scitldr", "dialogsum"]}},
            "tasks": {"type": "array", "items": {"type": "string", "enum": ["summary", "topic", "emotion"]}},
            "epochs": {"type": "integer", "minimum": 1, "maximum": 50, "default": 1,
                       "description": "Passes over the batches of every task the run trains on."},
            "learning_rate": {"type": "number", "description": "Default 0.0003 (LoRA) or 0.0001 (full)."},
            "method": {"type": "string", "enum": ["lora", "full"], "default": "lora"},
            "include_corrections": {"type": "boolean", "default": True},
            "recipe": {"type": "string", "enum": ["finetune"]},
            "include_feedback": {"type": "boolean", "description": "Same as include_corrections."},
            "train": {"type": "object", "additionalProperties": False, "properties": {
                "tasks": {"type": "array", "items": {"type": "string", "enum": ["summary", "topic", "emotion"]}},
                "learning_rate": {"type": "number"},
                "mode": {"type": "string", "enum": ["lora", "full"], "description": "Same as method."}}}}},
    "TrainingRun": {"type": "object", "properties": {
        "id": {"type": "integer"},
        "state": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "params": {"type": "object"},
        "progress": {"type": "object", "description": "`step`, `total_steps`, `loss`, `eta_s`, `epoch`, `phase`."},
        "history": {"type": "array", "items": {"type": "object"}, "description": "[{step, loss, lr}, ...]"},
        "metrics": {"type": "object"}, "error": NULLABLE_STR, "cancel_requested": {"type": "boolean"},
        "model_version_id": NULLABLE_INT, "created_at": TIMESTAMP, "started_at": NULLABLE_TIMESTAMP,
        "finished_at": NULLABLE_TIMESTAMP, "heartbeat_at": NULLABLE_TIMESTAMP, "url": {"type": "string"}}},
    "ModelVersion": {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"},
        "source": {"type": "string", "enum": ["base", "starter", "trained", "import"]},
        "is_active": {"type": "boolean"}, "metrics": {"type": "object"}, "parent_id": NULLABLE_INT,
        "training_run_id": NULLABLE_INT, "created_at": TIMESTAMP, "activated_at": NULLABLE_TIMESTAMP}},
    "ModelStatus": {"type": "object", "properties": {
        "state": {"type": "string", "enum": ["ready", "degraded", "training", "failed", "waiting"]},
        "message": {"type": "string"}, "version": NULLABLE_STR, "serving_version": NULLABLE_STR,
        "load_error": NULLABLE_STR, "training_run_id": NULLABLE_INT,
        "progress_pct": NULLABLE_NUM, "waiting_documents": {"type": "integer"}}},
}

RESPONSES = {f"E{status}": _json(_ref("Error"), text) for status, text in {
    400: "The request is invalid; the message says what to change.",
    401: "No valid credentials: send `Authorization: Bearer <token>`.",
    403: "Only administrators may do this.",
    404: "Not found, or it belongs to someone else.",
    409: "Conflicts with the current state (for example a training run is already going).",
    413: "The upload is over the size limit.",
    429: "Rate limit reached; wait and retry (see `Retry-After`).",
}.items()}

LOCATION = {"Location": {"description": "Where to poll.", "schema": {"type": "string"}}}

HISTORY_FILTERS = [
    _query("q", "Full-text search over title, file name and text (web-search syntax: quotes, OR, -word); "
           "a single term also matches any part of a file name."),
    _query("topic", "Topic of the latest result."),
    _query("emotion", "An emotion selected in the latest result."),
    _query("state", "Document state.", {"type": "string", "enum": DOC_STATES}),
    _query("from", "Uploaded on or after this day.", {"type": "string", "format": "date"}),
    _query("to", "Uploaded on or before this day.", {"type": "string", "format": "date"}),
    _query("model_version", "Version name of the latest result, e.g. v2."),
    _query("sort", "Order.", {"type": "string", "enum": ["newest", "oldest", "name", "name_desc"]}),
    _query("after", "Cursor: the page after this one (`next_cursor`)."),
    _query("before", "Cursor: the page before this one (`prev_cursor`)."),
    _query("limit", "Page size, 1 to 500.", {"type": "integer", "default": 50, "minimum": 1, "maximum": 500}),
]

PATHS: dict[str, Any] = {
    "/documents": {
        "post": {
            "operationId": "uploadDocuments", "tags": ["documents"], "summary": "Upload one or more files",
            "description": "Accepted: PDF, Word (.docx), HTML, Markdown, plain text. The whole upload is refused "
                           "(400, with each file's problem in `details.files`) if any file is unacceptable.",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["files"], "properties": {
                    "files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}}}}}}},
            "responses": {"202": {**_json(_ref("UploadAccepted"), "Stored; poll the job."), "headers": LOCATION},
                          **_errors(400, 401, 413, 429)},
        },
        "get": {
            "operationId": "listDocuments", "tags": ["documents"], "summary": "Your documents, filtered and paged",
            "parameters": HISTORY_FILTERS,
            "responses": {"200": _json(_ref("DocumentPage"), "One page."), **_errors(400, 401)},
        },
    },
    "/documents/{document_id}": {"get": {
        "operationId": "getDocument", "tags": ["documents"], "summary": "A document with its latest result",
        "parameters": [_id_param("document_id", "document"),
                       _query("text", "1 to include the extracted text; anything but 0 or 1 is a 400.",
                              {"type": "string", "enum": ["0", "1"]})],
        "responses": {"200": _json(_ref("Document"), "The document."), **_errors(400, 401, 404)},
    }},
    "/documents/{document_id}/feedback": {"post": {
        "operationId": "correctDocument", "tags": ["documents"],
        "summary": "Correct the latest result (becomes a training example)",
        "parameters": [_id_param("document_id", "document")],
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("Feedback")}}},
        "responses": {"201": _json(_ref("FeedbackStored"), "Stored."), **_errors(400, 401, 404)},
    }},
    "/jobs": {"get": {
        "operationId": "listJobs", "tags": ["jobs"], "summary": "Your uploads, newest first",
        "parameters": [_query("before", "Only jobs with a smaller id (`next_before`); anything but a "
                              "whole number from 1 to 2147483647 is a 400.",
                              {"type": "integer", "minimum": 1, "maximum": MAX_ID}),
                       _query("limit", "Page size, 1 to 200.", {"type": "integer", "default": 50, "minimum": 1, "maximum": 200})],
        "responses": {"200": _json({"type": "object", "properties": {
            "jobs": {"type": "array", "items": _ref("JobSummary")}, "next_before": NULLABLE_INT}}, "One page."),
            **_errors(400, 401)},
    }},
    "/jobs/{job_id}": {"get": {
        "operationId": "getJob", "tags": ["jobs"], "summary": "Progress of one upload",
        "parameters": [_id_param("job_id", "job")],
        "responses": {"200": _json(_ref("Job"), "The job."), **_errors(401, 404)},
    }},
    "/training-runs": {
        "post": {
            "operationId": "startTrainingRun", "tags": ["training"], "summary": "Start a training run (admin)",
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("TrainingRequest")}}},
            "responses": {"202": {**_json(_ref("TrainingRun"), "Queued; poll it."), "headers": LOCATION},
                          **_errors(400, 401, 403, 409, 429)},
        },
        "get": {
            "operationId": "listTrainingRuns", "tags": ["training"], "summary": "Training runs, newest first (admin)",
            "parameters": [_query("limit", "How many, 1 to 200.", {"type": "integer", "default": 50, "minimum": 1, "maximum": 200})],
            "responses": {"200": _json({"type": "object", "properties": {
                "training_runs": {"type": "array", "items": _ref("TrainingRun")}}}, "The runs (without history)."),
                **_errors(400, 401, 403)},
        },
    },
    "/training-runs/{run_id}": {"get": {
        "operationId": "getTrainingRun", "tags": ["training"], "summary": "One run with its loss history (admin)",
        "parameters": [_id_param("run_id", "training run")],
        "responses": {"200": _json(_ref("TrainingRun"), "The run."), **_errors(401, 403, 404)},
    }},
    "/training-runs/{run_id}/cancel": {"post": {
        "operationId": "cancelTrainingRun", "tags": ["training"], "summary": "Cancel a queued or running run (admin)",
        "parameters": [_id_param("run_id", "training run")],
        "responses": {"202": _json(_ref("TrainingRun"), "Cancelled, or stopping at its next step."),
                      **_errors(401, 403, 404, 409)},
    }},
    "/models": {"get": {
        "operationId": "listModels", "tags": ["models"], "summary": "Model versions and the model status",
        "responses": {"200": _json({"type": "object", "properties": {
            "models": {"type": "array", "items": _ref("ModelVersion")}, "status": _ref("ModelStatus")}},
            "Versions, newest first."), **_errors(401)},
    }},
    "/models/{version_id}/activate": {"post": {
        "operationId": "activateModel", "tags": ["models"], "summary": "Make a version the active one (admin)",
        "parameters": [_id_param("version_id", "model version")],
        "responses": {"200": _json(_ref("ModelVersion"), "Now active."), **_errors(401, 403, 404)},
    }},
    "/models/rollback": {"post": {
        "operationId": "rollbackModel", "tags": ["models"],
        "summary": "Re-activate the previously active version (admin)",
        "responses": {"200": _json(_ref("ModelVersion"), "Now active."), **_errors(401, 403, 409)},
    }},
    "/openapi.json": {"get": {
        "operationId": "getOpenApi", "tags": ["meta"], "summary": "This document", "security": [],
        "responses": {"200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}}},
    }},
}


def openapi_document(server_url: str = "/api/v1") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LexiMind API", "version": "1",
            "description": "Upload documents, poll their jobs, read summaries, topics and emotions, correct them, "
                           "and (admins) train and activate model versions. Errors are "
                           "`{\"error\": {\"code\", \"message\"}}`; the message says what to do.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "An API token from your account page: `Authorization: Bearer lm_...`."}},
            "schemas": SCHEMAS,
            "responses": RESPONSES,
        },
    }
