"""JSON shapes of jobs, documents, results, training runs and model versions (the API's vocabulary)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for

from db.history import JobStatus, JobSummary
from db.models import Document, ModelVersion, Result, TrainingRun

# plain words for error codes a worker may store without a message of its own
ERROR_WORDS = {
    "empty_file": "The file is empty.",
    "too_large": "The file is larger than the processing limit.",
    "unsupported_type": "This is not a format LexiMind reads. Upload a PDF, Word (.docx), HTML, Markdown or text file.",
    "too_many_pages": "The PDF has more pages than the processing limit; split it and upload the parts.",
    "password_protected": "The file is protected by a password. Remove the password and upload it again.",
    "no_text_layer": "The PDF contains only scanned images, no text. Run OCR on it first, then upload it again.",
    "corrupt_file": "The file is damaged and cannot be read. Export or save it again and upload the new copy.",
    "timeout": "Reading the file took too long. Try a smaller or simpler file.",
    "out_of_memory": "Reading the file needed too much memory. Try a smaller or simpler file.",
    "parser_crashed": "The reader crashed on this file. Save it again in another program and re-upload.",
    "decompression_bomb": "The Word file expands to far more data than it should; it was not read.",
    "no_text": "The file holds no readable text.",
}


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def error_dict(code: str | None, message: str | None) -> dict[str, str] | None:
    if not code and not message:
        return None
    return {"code": code or "failed", "message": message or ERROR_WORDS.get(code or "", "Processing failed.")}


def job_status_dict(status: JobStatus) -> dict[str, Any]:
    document_url = url_for("api.documents.show", document_id=0)[:-1]  # once, not once per document
    return {
        "id": status.id,
        "state": status.state,
        "created_at": iso(status.created_at),
        "progress": {"total": status.total, "done": status.done, "failed": status.failed,
                     "in_progress": status.in_progress},
        "queue_position": status.queue_position,
        "eta_seconds": round(status.eta_seconds, 1) if status.eta_seconds is not None else None,
        "throughput_per_second": round(status.throughput, 3) if status.throughput else None,
        "waiting_for_model": status.waiting_for_model,
        "documents": [
            {"id": d.id, "filename": d.filename, "state": d.state,
             "error": error_dict(d.error_code, d.error_message) if d.state == "failed" else None,
             "url": f"{document_url}{d.id}"}
            for d in status.documents
        ],
    }


def job_summary_dict(job: JobSummary) -> dict[str, Any]:
    return {"id": job.id, "state": job.state, "created_at": iso(job.created_at),
            "progress": {"total": job.total, "done": job.done, "failed": job.failed},
            "url": url_for("api.jobs.show", job_id=job.id)}


def result_dict(result: Result) -> dict[str, Any]:
    emotions = result.emotions or []
    return {
        "id": result.id,
        "summary": result.summary,
        "topic": ({"label": result.topic_label, "score": result.topic_score, "scores": result.topic_scores or {}}
                  if result.topic_label else None),
        "emotions": [{"label": e["label"], "score": e["score"], "threshold": e.get("threshold")}
                     for e in emotions if e.get("selected")],
        "emotion_scores": emotions,
        "model_version": result.model_version.name if result.model_version else None,
        "timings": result.timings or {},
        "created_at": iso(result.created_at),
    }


def document_dict(document: Document, *, with_text: bool = False) -> dict[str, Any]:
    results = document.results
    body: dict[str, Any] = {
        "id": document.id,
        "job_id": document.job_id,
        "filename": document.filename,
        "title": document.title,
        "content_type": document.content_type,
        "size_bytes": document.size_bytes,
        "page_count": document.page_count,
        "state": document.state,
        "error": error_dict(document.error_code, document.error_message) if document.state == "failed" else None,
        "created_at": iso(document.created_at),
        "finished_at": iso(document.finished_at),
        "result": result_dict(results[-1]) if results else None,
        "earlier_results": [result_dict(r) for r in reversed(results[:-1])],
    }
    if with_text:
        body["text"] = document.text
    return body


def run_dict(run: TrainingRun, *, with_history: bool = True) -> dict[str, Any]:
    body = {
        "id": run.id,
        "state": run.state,
        "params": run.params or {},
        "progress": run.progress or {},
        "metrics": run.metrics or {},
        "error": run.error_message,
        "cancel_requested": run.cancel_requested,
        "model_version_id": run.model_version_id,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "heartbeat_at": iso(run.heartbeat_at),
        "url": url_for("api.training.show_run", run_id=run.id),
    }
    if with_history:
        body["history"] = run.history or []
    return body


def version_dict(version: ModelVersion) -> dict[str, Any]:
    return {
        "id": version.id,
        "name": version.name,
        "source": version.source,
        "is_active": version.is_active,
        "metrics": version.metrics or {},
        "parent_id": version.parent_id,
        "training_run_id": version.training_run_id,
        "created_at": iso(version.created_at),
        "activated_at": iso(version.activated_at),
    }
