"""Notices of facts beyond dunning (an alert crossed, a webhook endpoint disabled): the value type
and the publishing protocol; the EventBridge adapter is ``billing.adapters.aws.notices``.

Invariants: a notice reports a fact already stored and is published after it; its ``id`` is stable
for the fact, so a consumer drops repeats (delivery is at least once); publishing never fails the
action it reports (a lost notice is logged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from billing.kernel.periods import iso


@dataclass(frozen=True)
class FactNotice:
    """EventBridge ``source: billing``, ``detail-type``: ``kind`` (``alert.triggered``...)."""

    kind: str
    id: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)

    def detail(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "at": iso(self.at), **self.data}


class FactNotices(Protocol):
    def publish(self, notices: Sequence[FactNotice]) -> None:
        """Publish every notice; never raises."""
        ...
