"""The matrix: every scenario × pairing × model, each on a fresh in-process kernel."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .lab import MODELS, PAIRINGS
from .scenarios import SCENARIOS, Cell, run_cell


@dataclass
class Report:
    cells: list[Cell] = field(default_factory=list)

    def cell(self, scenario: str, pairing: str, model: str) -> Cell:
        return next(c for c in self.cells
                    if (c.scenario, c.pairing, c.model) == (scenario, pairing, model))

    def as_dict(self) -> dict:
        return {"scenarios": [{"key": s.key, "title": s.title} for s in SCENARIOS],
                "pairings": [{"key": p.name, "title": p.title,
                              "lowers": [f"{k}@{n}" for k, n in p.lowers]} for p in PAIRINGS],
                "models": list(MODELS),
                "cells": [c.as_dict() for c in self.cells]}


def run_report(progress: Callable[[int, int, str], None] | None = None) -> Report:
    """Every scenario × pairing × model, each on a fresh in-process kernel."""
    report = Report()
    total = len(SCENARIOS) * len(PAIRINGS) * len(MODELS)
    for scenario in SCENARIOS:
        for pairing in PAIRINGS:
            for model in MODELS:
                if progress is not None:
                    progress(len(report.cells), total,
                             f"{scenario.key} {pairing.name} {model}")
                report.cells.append(run_cell(scenario, pairing, model))
    if progress is not None:
        progress(total, total, "done")
    return report
