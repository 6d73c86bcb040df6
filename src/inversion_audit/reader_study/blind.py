"""What a reader may know of a design: anonymised cases with their kind and letters, each
reader's case order and candidate order, the questions. No subject id, file, run, fold,
score or answer key.

:meth:`~.design.Design.blind` makes one from a full design; a reader package
(:mod:`.package_db`) stores only this. Cases are listed by case id (random), never in the
design's order, which follows the subject ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BlindCase", "BlindDesign", "questions_for"]


def questions_for(questions: tuple[str, ...], kind: str) -> tuple[str, ...]:
    """The questions asked for a case of ``kind``: quality cases ask no match or confidence."""
    if kind == "quality":
        return tuple(q for q in questions if q in ("anatomy", "comment"))
    return tuple(questions)


@dataclass(frozen=True)
class BlindCase:
    """One case as a reader may know it: its anonymised id, kind and candidate labels."""

    case_id: str
    kind: str  #: ``"match"`` or ``"quality"``
    labels: tuple[str, ...] = ()  #: the case's candidate labels (none for quality)


@dataclass(frozen=True)
class BlindDesign:
    """The blinded part of a design: enough to show cases and validate answers."""

    questions: tuple[str, ...]
    allow_revisit: bool
    readers: tuple[str, ...]
    cases: tuple[BlindCase, ...]  #: sorted by case id
    orders: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: reader -> case id -> the case's labels in the order that reader sees them
    candidate_orders: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)

    def case(self, case_id: str) -> BlindCase:
        """The case with anonymised id ``case_id``."""
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise KeyError(case_id)

    def shown_labels(self, reader: str, case_id: str) -> tuple[str, ...]:
        """The labels of ``case_id``'s candidates in the order ``reader`` sees them."""
        order = self.candidate_orders.get(reader, {}).get(case_id)
        return tuple(order) if order else self.case(case_id).labels

    def questions_for(self, case: BlindCase) -> tuple[str, ...]:
        """The questions asked for ``case``."""
        return questions_for(self.questions, case.kind)
