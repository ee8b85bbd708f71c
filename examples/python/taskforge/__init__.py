"""A TaskForge client in pure Python (standard library only).

- :mod:`taskforge.codec`: frame headers and the bincode ``standard()`` body encoding.
- :mod:`taskforge.messages`: every request and response body, and the opcode table.
- :mod:`taskforge.errors`: one exception class per error code.
- :mod:`taskforge.client`: :class:`Client`, a synchronous session with one method per
  operation.

The wire format is specified in ``protocol/PROTOCOL.md``; this package follows it and is
checked against the golden frames in ``protocol/vectors/``.
"""

from .client import Client, Connection
from .errors import (
    ClientError,
    Conflict,
    ConnectionClosed,
    DuplicateRequestId,
    Forbidden,
    FrameTooLarge,
    HandshakeRequired,
    Internal,
    InvalidArgument,
    LeaseLost,
    MalformedFrame,
    NotFound,
    ProtocolViolation,
    QuotaExceeded,
    RateLimited,
    TaskForgeError,
    Unauthenticated,
    Unavailable,
    UnknownOpcode,
    UnsupportedVersion,
)
from .messages import (
    ALL_SCOPES,
    AckRequest,
    ApiKey,
    Backoff,
    JobState,
    NewJob,
    OrgStatus,
    Password,
    Plan,
    PlanLimits,
    PrincipalKind,
    RetryAt,
    RetryBackoff,
    RetryNever,
    Role,
    RootToken,
    Scope,
    SubscriptionStatus,
)

__all__ = [
    "ALL_SCOPES",
    "AckRequest",
    "ApiKey",
    "Backoff",
    "Client",
    "ClientError",
    "Conflict",
    "Connection",
    "ConnectionClosed",
    "DuplicateRequestId",
    "Forbidden",
    "FrameTooLarge",
    "HandshakeRequired",
    "Internal",
    "InvalidArgument",
    "JobState",
    "LeaseLost",
    "MalformedFrame",
    "NewJob",
    "NotFound",
    "OrgStatus",
    "Password",
    "Plan",
    "PlanLimits",
    "PrincipalKind",
    "ProtocolViolation",
    "QuotaExceeded",
    "RateLimited",
    "RetryAt",
    "RetryBackoff",
    "RetryNever",
    "Role",
    "RootToken",
    "Scope",
    "SubscriptionStatus",
    "TaskForgeError",
    "Unauthenticated",
    "Unavailable",
    "UnknownOpcode",
    "UnsupportedVersion",
]
