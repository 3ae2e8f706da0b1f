"""Text extraction for LexiMind: uploaded bytes -> clean text, or a reason a person can act on.

    from workers.extraction import extract, ExtractionLimits, Extracted, ExtractionError
    result = extract(data, filename, content_type, ExtractionLimits())

``extract`` parses in a sandboxed child process (see sandbox.py); ``extract_in_process`` parses right here
and is what the child itself runs. A pure library: no Celery, no database.
"""

from .core import extract_in_process
from .errors import ERROR_CODES, ExtractionError
from .result import FORMATS, Extracted, ExtractionLimits
from .sandbox import Sandbox, SandboxUnavailable, extract

__all__ = [
    "ERROR_CODES",
    "FORMATS",
    "Extracted",
    "ExtractionError",
    "ExtractionLimits",
    "Sandbox",
    "SandboxUnavailable",
    "extract",
    "extract_in_process",
]
