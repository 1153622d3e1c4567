"""What the client hears after an `approve` frame, given memory's record of the decision.

Memory keeps one decision per tool call: the first one wins, and one after the deadline
is `expired` (the reasoner has denied the call by then). Its `Approval` reply is that
record. So the user's own decision sent again (a retry) is answered like the first time,
and a decision that contradicts an earlier one (another socket, another device) is refused.
A decision that stands is not answered at all: the turn goes on through the
conversation's stream (`tool.started`/`tool.finished`, or the denial as a failed call).

The `approve` names its call by turn and echoes the digest of the arguments it was shown;
memory decides only that call and only for those arguments. A reply with another digest
means memory recorded nothing: the user was shown other arguments.
"""

from __future__ import annotations

from agentry_shared.contracts.errors import ClientErrorCode
from agentry_shared.contracts.frames import Approve
from agentry_shared.contracts.memory import Approval

from agentry_gateway.inbound import APPROVAL_ALREADY_DECIDED, APPROVAL_ARGS_MISMATCH, APPROVAL_EXPIRED, UNAVAILABLE


def refusal(frame: Approve, reply: Approval) -> tuple[ClientErrorCode, str] | None:
    """(code, message) of the error frame, or None when the user's decision stands."""
    if reply.args_sha256 != frame.args_sha256:
        message = "args_sha256 is not the digest of this call's arguments: nothing was recorded"
        return APPROVAL_ARGS_MISMATCH, message
    state = reply.state
    if state == ("approved" if frame.approved else "denied"):
        return None
    if state == "expired":
        return APPROVAL_EXPIRED, "the approval expired before the answer: the call was denied"
    if state in ("approved", "denied"):
        return APPROVAL_ALREADY_DECIDED, f"the call was already {state}"
    # `pending` after a decision: memory did not record it (a bug or a race there); retry.
    return UNAVAILABLE, "the memory service did not record the decision; retry"
