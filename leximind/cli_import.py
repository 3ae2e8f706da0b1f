"""``leximind import-dataset``: a folder of files, or the rows of a CSV / JSONL file, as uploaded documents."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from leximind.config import Settings


def cmd_import_dataset(args: argparse.Namespace, settings: Settings) -> int:
    """Upload a folder of files, or the rows of a CSV / JSONL file, as documents of one or more jobs.

    Every file or row is read and checked before anything is stored, so a bad row refuses the whole import
    (naming the file and line) instead of leaving part of it uploaded."""
    from db.accounts import get_user_by_email
    from db.session import session_scope
    from db.uploads import create_job
    from leximind.cli import prepare_services, require_installation
    from leximind.messaging import make_celery, wake_extract

    if not require_installation(settings):
        return 1
    services = prepare_services(settings)
    with session_scope(services.database_url) as session:
        owner = get_user_by_email(session, args.owner)
        if owner is None:
            print(f"error: no user {args.owner!r}; create one with `leximind create-user`", file=sys.stderr)
            return 1
        owner_id = owner.id
    try:
        files = list(dataset_files(Path(args.path), args.text_column, args.limit))
    except DatasetError as err:
        print(f"error: {err}; nothing was imported", file=sys.stderr)
        return 1
    if not files:
        print(f"error: {args.path} holds no non-empty documents or rows; nothing was imported", file=sys.stderr)
        return 1
    too_big = [f for f in files if len(f.data) > settings.max_upload_bytes]
    if too_big:  # the upload's limit: extraction is sized for it
        names = ", ".join(f"{f.filename} ({len(f.data) / 1048576:.1f} MB)" for f in too_big[:5])
        print(f"error: {len(too_big)} file(s) over the {settings.max_upload_bytes / 1048576:.0f} MB limit per file "
              f"(LEXIMIND_MAX_UPLOAD_BYTES): {names}; nothing was imported", file=sys.stderr)
        return 1
    celery = make_celery(services.broker_url)
    total, jobs = 0, []
    for chunk in _chunks(iter(files), args.per_job):
        with session_scope(services.database_url) as session:
            job, documents = create_job(session, owner_id, chunk)
            ids = [d.id for d in documents]
        wake_extract(celery, ids)
        total += len(ids)
        jobs.append(job.id)
    print(json.dumps({"documents": total, "jobs": jobs}), flush=True)
    return 0


class DatasetError(ValueError):
    """A dataset the import cannot read; the message names the file (and line) and what to change."""


def dataset_files(path: Path, text_column: str | None, limit: int | None) -> Iterator:
    """The documents of a folder (every file under it), a .csv or .jsonl (one per row), or a single file.

    Empty files and rows are left out (an upload refuses them too); anything unreadable is a DatasetError."""
    from db.uploads import UploadedFile

    if not path.exists():
        raise DatasetError(f"{path} does not exist; give a folder, a .csv or .jsonl file, or a document")
    column: int | None = None
    if path.suffix == ".csv" and text_column is not None:
        try:
            column = int(text_column)
        except ValueError:
            raise DatasetError(f"--text-column for a .csv is a column number (0 is the first), "
                               f"not {text_column!r}") from None

    def jsonl_text(line: str, where: str) -> str:
        key = text_column or "text"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where} is not JSON ({exc.msg}); each line must be one JSON object") from None
        if not isinstance(row, dict) or key not in row:
            keys = ", ".join(map(str, row)) if isinstance(row, dict) else "none: not an object"
            raise DatasetError(f"{where} has no {key!r} field (its fields: {keys}); choose one with --text-column")
        if not isinstance(row[key], str):
            raise DatasetError(f"{where}: {key!r} must be a string, not {type(row[key]).__name__}")
        return row[key]

    def csv_text(row: list[str], where: str) -> str:
        if column is None:
            return "\n".join(row[1:] or row)
        if not -len(row) <= column < len(row):
            raise DatasetError(f"{where} has {len(row)} column(s), so there is no column {column}")
        return row[column]

    def rows() -> Iterator[UploadedFile]:
        if path.is_dir():  # hidden files and folders (.DS_Store, .git/) are not documents
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if not any(part.startswith(".") for part in file.relative_to(path).parts):
                    yield UploadedFile(file.name, file.read_bytes())
        elif path.suffix == ".jsonl":  # utf-8-sig: a byte-order mark (Excel, Notepad) is not part of row 1
            with path.open(encoding="utf-8-sig") as handle:
                for n, line in enumerate(handle, 1):
                    if line.strip():
                        text = jsonl_text(line, f"{path}, line {n}")
                        yield UploadedFile(f"{path.stem}-{n}.txt", text.encode())
        elif path.suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as handle:
                for n, row in enumerate(csv.reader(handle), 1):
                    text = csv_text(row, f"{path}, row {n}")
                    yield UploadedFile(f"{path.stem}-{n}.txt", text.replace("\\n", "\n").encode())
        else:
            yield UploadedFile(path.name, path.read_bytes())

    count = 0
    try:
        for upload in rows():
            if limit is not None and count >= limit:
                return
            if not upload.data.strip():
                continue
            count += 1
            yield upload
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not UTF-8 text; convert it (e.g. `iconv -f cp1252 -t utf-8`)") from None
    except csv.Error as exc:
        raise DatasetError(f"{path} is not a readable CSV file ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {exc.filename or path}: {exc.strerror}") from None


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
