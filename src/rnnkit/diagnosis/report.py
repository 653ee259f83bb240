"""The doctor's findings and the report that holds them: readable text or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """One result of one check.

    ``check`` is a stable id (e.g. ``"non-finite-values"``), ``severity`` one of 'error',
    'warning', 'info', ``where`` a JSON-ready dict locating the problem (array positions, file
    line and column, layer name), empty when the finding concerns the whole setup.
    """

    check: str
    severity: str
    message: str
    suggestion: str
    where: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"Finding: severity must be one of {SEVERITIES}, got {self.severity!r}")


@dataclass
class Report:
    """The doctor's findings, errors first; ``passed`` lists the checks that ran and found nothing."""

    findings: list[Finding] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def checks(self) -> set[str]:
        """The ids of the checks that reported something."""
        return {f.check for f in self.findings}

    def to_dict(self) -> dict:
        return {"findings": [asdict(f) for f in self.findings]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        counts = ", ".join(_count(sum(f.severity == s for f in self.findings), s)
                           for s in SEVERITIES)
        lines = [f"rnnkit doctor: {counts}; {_count(len(self.passed), 'check')} passed"]
        for f in self.findings:
            lines.append(f"{f.severity.upper():8}[{f.check}] {f.message}")
            if f.where:
                lines.append(f"{'':8}where: {_where_text(f.where)}")
            lines.append(f"{'':8}fix:   {f.suggestion}")
        if self.passed:
            lines.append(f"passed: {', '.join(self.passed)}")
        return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _where_text(where: dict) -> str:
    # positions are spelled out in the message; the JSON keeps them in full
    return "; ".join(f"{k}={v}" for k, v in where.items() if k != "positions")
