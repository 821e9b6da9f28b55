"""Errors a user can act on. Each message names the file, column, row and value involved."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """One cell (or whole column) that does not match the schema; small, so that thousands can
    be listed and serialised."""

    file: str
    column: str
    row: int | None  # 1-based data row (header excluded); None for whole-column problems
    value: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}: column {self.column!r}"
        if self.row is not None:
            where += f", row {self.row}"
        return f"{where}: {self.problem} (value: {self.value})"


class FedsynthError(Exception):
    """Base class: the CLI prints these without a traceback."""


class SchemaError(FedsynthError):
    """The schema file itself is malformed or incomplete."""


class DataError(FedsynthError):
    """A table does not match the schema (wrong type, out of bounds, unknown category...)."""

    def __init__(self, message: str, violations: list[Violation] | None = None) -> None:
        super().__init__(message)
        self.violations = violations or []


class PrivacyError(FedsynthError):
    """An impossible or unsafe privacy setting, or a budget that would be exceeded."""


class BudgetExhausted(PrivacyError):
    """The client's ledger has no room for the requested training."""


class StorageError(FedsynthError, OSError):
    """A file could not be written (full disk, I/O error); the previous version is intact."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        FedsynthError.__init__(self, message)
        self.errno = errno  # type: ignore[misc]

