"""Worker faults: when the worker fails rather than the evaluation.

A command that exits non-zero or runs out of time is a verdict about the candidate. A
connection that drops, a host that cannot be reached, a refused host key: those say nothing
about the candidate, so the evaluation is retried on another worker and the worker is marked
down for a while. These exceptions carry that difference through the evaluator untouched.
"""

from __future__ import annotations


class WorkerFailed(Exception):
    """The worker could not run (or finish running) an evaluation; retry it elsewhere.

    `permanent` faults (a host key refused, authentication refused, an unknown host name)
    will not heal by themselves: the worker is still retried, but only after a long backoff.
    """

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class NoWorker(Exception):
    """No worker can take an evaluation: every slot of its group is down for good."""
