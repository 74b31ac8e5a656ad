"""What a data-preparation step did, in one report type shared by every data script."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

SHOW_FIRST = 5


@dataclass
class StepReport:
    """What a data-preparation step did: written, skipped (already there), missing, failed."""

    step: str
    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (id, what is missing)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, problem)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False

    def lines(self) -> list[str]:
        """A short summary for the terminal: counts, the first few ids, every failure."""
        verb = "would write" if self.dry_run else "wrote"
        out = [f"{self.step}: {verb} {len(self.done)} files to {self.out}, "
               f"skipped {len(self.skipped)} already there"]
        out += [f"note: {n}" for n in self.notes]
        if self.missing:
            ids = ", ".join(f"{i} ({why})" for i, why in self.missing[:SHOW_FIRST])
            more = f", ... (+{len(self.missing) - SHOW_FIRST})" if len(
                self.missing) > SHOW_FIRST else ""
            out.append(f"warning: {len(self.missing)} left out: {ids}{more}")
        out += [f"failed: {path}: {problem}" for path, problem in self.failed]
        return out

    @property
    def exit_code(self) -> int:
        """1 when any file failed (the others were still processed), else 0."""
        return 1 if self.failed else 0


def print_report(report: StepReport) -> int:
    """Print a report (failures and warnings on stderr) and return the exit code."""
    for line in report.lines():
        stream = sys.stderr if line.startswith(("failed", "warning")) else sys.stdout
        print(line, file=stream)
    return report.exit_code
