"""A single schema violation, kept small so it can be listed in bulk and serialised."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
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
