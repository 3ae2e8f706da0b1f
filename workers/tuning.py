"""The job-system knobs are defined in ``leximind.config`` (one place for every setting); kept importable here."""

from leximind.config import JobTuning

__all__ = ["JobTuning"]
