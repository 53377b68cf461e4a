"""User-facing input errors.

Every problem with a file or a user-supplied value that the user can fix is raised as
:class:`MrisrInputError`. Command-line entry points catch it, print ``str(err)`` (which names the file,
the problem and the fix) and exit with a non-zero status instead of showing a traceback.
"""

from __future__ import annotations

import os

__all__ = ["MrisrInputError"]


class MrisrInputError(ValueError):
    """A problem with an input file or value that the user can fix.

    Subclasses :class:`ValueError` so that generic callers that catch ``ValueError`` still work.

    Args:
        path: File the problem concerns, or ``None`` for in-memory data.
        problem: What is wrong, as a short clause without a trailing full stop
            (e.g. ``"4-D image with 3 volumes"``).
        fix: What the user should do about it (e.g. ``"extract one volume first"``).

    Attributes:
        path: The offending file as a string, or ``None``.
        problem: The problem clause.
        fix: The suggested fix.

    Example:
        >>> str(MrisrInputError("a.nii.gz", "file does not exist", "check the path"))
        'a.nii.gz: file does not exist. Fix: check the path'
    """

    def __init__(self, path: str | os.PathLike[str] | None, problem: str, fix: str) -> None:
        self.path: str | None = None if path is None else os.fspath(path)
        self.problem: str = problem.rstrip(". ")
        self.fix: str = fix
        super().__init__(self._format())

    def _format(self) -> str:
        body = f"{self.problem}. Fix: {self.fix}"
        return body if self.path is None else f"{self.path}: {body}"

    def __str__(self) -> str:
        return self._format()

    def __reduce__(self) -> tuple[type[MrisrInputError], tuple[str | None, str, str]]:
        # Keep the three-argument constructor working through pickling (multiprocessing workers).
        return (type(self), (self.path, self.problem, self.fix))
