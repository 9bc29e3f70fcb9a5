"""Typed errors for bad ECG input.

Every message names the offending file (or record id) and says what is wrong, so that a batch job
over thousands of files can report precisely which ones to fix. Catch `EcgError` to catch them all.
"""

from __future__ import annotations

__all__ = ["EcgError", "EcgFormatError", "EcgLeadError", "EcgSignalError"]


class EcgError(ValueError):
    """Base class: something about an ECG input is unusable.

    Args:
        source: the file path or record id the problem belongs to.
        problem: what is wrong, in words.
    """

    def __init__(self, source: object, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")

    def __reduce__(self):
        # ValueError pickles as cls(*args) with the joined message; rebuild from the two parts instead, so
        # errors raised in DataLoader / datasets.map worker processes reach the parent intact.
        return type(self), (self.source, self.problem)


class EcgFormatError(EcgError):
    """The file cannot be read as an ECG: missing, unreadable, truncated, unknown format, bad header."""


class EcgLeadError(EcgError):
    """The leads are wrong: unknown names, duplicates, missing leads that cannot be derived."""


class EcgSignalError(EcgError):
    """The samples are wrong: NaN gaps, inf, flat or absurd amplitudes, wrong sampling rate, too short or long."""
