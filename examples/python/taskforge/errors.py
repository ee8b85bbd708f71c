"""Exceptions: one class per TaskForge error code, plus failures on the client's side.

A request the broker refuses raises a subclass of :class:`TaskForgeError` chosen by the
stable numeric code of PROTOCOL.md §10.1, so callers catch what they can handle::

    try:
        client.ack(job.job_id, job.lease_id)
    except LeaseLost:
        pass  # the lease expired and the job went to another worker; nothing changed

A code this client does not know raises :class:`Internal`, as §10.1 asks, with ``.code``
still the number received.

During HELLO the broker closes the connection after every error but MALFORMED_FRAME and
CONFLICT (FORBIDDEN for a project, QUOTA_EXCEEDED for connections, RATE_LIMITED for failed
handshakes included); :meth:`taskforge.Client.hello` closes the client then.
"""

from .messages import NoDetails, RetryAfterDetails


class TaskForgeError(Exception):
    """The broker answered a request with an error frame.

    Attributes: ``code`` (the number on the wire), ``name`` (its SCREAMING_CASE name),
    ``message`` (a sentence for people, not for parsing), ``details`` (an ErrorDetails
    variant from :mod:`taskforge.messages`: ``NoDetails``, ``QuotaDetails``,
    ``RetryAfterDetails`` or ``BatchItemDetails``).
    """

    #: The code of this class; :class:`TaskForgeError` itself has none.
    CODE = None
    #: The name of this class's code.
    NAME = None
    #: True when the broker closes the connection after sending this error.
    CLOSES_CONNECTION = False

    def __init__(self, code, message, details=None):
        super().__init__("%s (%d): %s" % (self.NAME or "ERROR", code, message))
        self.code = code
        self.name = self.NAME
        self.message = message
        self.details = details if details is not None else NoDetails()


class Unauthenticated(TaskForgeError):
    """HELLO credentials are missing, unknown or wrong. The broker closes the connection."""

    CODE, NAME, CLOSES_CONNECTION = 1, "UNAUTHENTICATED", True


class Forbidden(TaskForgeError):
    """The session's principal may not do this: a missing API key scope (the message names
    it), a role without the permission, a queue or job operation without a project, an
    enqueue while the subscription is past due or cancelled; during HELLO, a project the
    principal may not use."""

    CODE, NAME = 2, "FORBIDDEN"


class NotFound(TaskForgeError):
    """The named queue, job or worker does not exist in the session's project (a stopped or
    forgotten worker's HEARTBEAT gets it too: register again), or the named organization,
    user, project or API key does not exist or is another tenant's."""

    CODE, NAME = 3, "NOT_FOUND"


class InvalidArgument(TaskForgeError):
    """A field is out of range or malformed; the message names it."""

    CODE, NAME = 4, "INVALID_ARGUMENT"


class FrameTooLarge(TaskForgeError):
    """A frame was over the limit in force. The broker closes the connection."""

    CODE, NAME, CLOSES_CONNECTION = 5, "FRAME_TOO_LARGE", True


class MalformedFrame(TaskForgeError):
    """A frame or body could not be decoded by the broker."""

    CODE, NAME = 6, "MALFORMED_FRAME"


class UnknownOpcode(TaskForgeError):
    """The broker does not know this operation (an older broker)."""

    CODE, NAME = 7, "UNKNOWN_OPCODE"


class QuotaExceeded(TaskForgeError):
    """A quota of the tenant's plan is exhausted; ``details`` is a ``QuotaDetails``."""

    CODE, NAME = 8, "QUOTA_EXCEEDED"


class RateLimited(TaskForgeError):
    """Too many requests (a project's enqueue rate, or failed handshakes from this address);
    wait :attr:`retry_after_ms` before retrying."""

    CODE, NAME = 9, "RATE_LIMITED"

    @property
    def retry_after_ms(self):
        """Milliseconds to wait, from the ``RetryAfter`` details, or ``None``."""
        if isinstance(self.details, RetryAfterDetails):
            return self.details.retry_after_ms
        return None


class LeaseLost(TaskForgeError):
    """The lease is not the job's current lease (expired, re-leased, released with a lost or
    leaving worker, or cancelled); ACK, FAIL, EXTEND, LOG and PROGRESS may get it.

    Nothing changed, except that a job cancelled while leased is now ``cancelled``.
    """

    CODE, NAME = 10, "LEASE_LOST"


class Conflict(TaskForgeError):
    """The request conflicts with the current state (the queue exists, the job is finished,
    a FETCH names a worker that is quiet or terminating)."""

    CODE, NAME = 11, "CONFLICT"


class Unavailable(TaskForgeError):
    """The broker cannot serve this now; retry later. A change's outcome is unknown."""

    CODE, NAME = 12, "UNAVAILABLE"


class Internal(TaskForgeError):
    """A bug in the broker (or an error code this client does not know)."""

    CODE, NAME = 13, "INTERNAL"


class HandshakeRequired(TaskForgeError):
    """A request other than HELLO or PING was sent before HELLO. The broker closes."""

    CODE, NAME, CLOSES_CONNECTION = 14, "HANDSHAKE_REQUIRED", True


class UnsupportedVersion(TaskForgeError):
    """The broker does not speak this protocol version. It closes the connection."""

    CODE, NAME, CLOSES_CONNECTION = 15, "UNSUPPORTED_VERSION", True


class DuplicateRequestId(TaskForgeError):
    """The request id was already in flight on the connection; the duplicate did not run."""

    CODE, NAME = 16, "DUPLICATE_REQUEST_ID"


#: Every error class by its code.
ERRORS_BY_CODE = {
    cls.CODE: cls
    for cls in (
        Unauthenticated,
        Forbidden,
        NotFound,
        InvalidArgument,
        FrameTooLarge,
        MalformedFrame,
        UnknownOpcode,
        QuotaExceeded,
        RateLimited,
        LeaseLost,
        Conflict,
        Unavailable,
        Internal,
        HandshakeRequired,
        UnsupportedVersion,
        DuplicateRequestId,
    )
}


def error_from_body(body):
    """The exception for an :class:`taskforge.messages.ErrorBody` (not raised)."""
    cls = ERRORS_BY_CODE.get(body.code, Internal)
    return cls(body.code, body.message, body.details)


class ClientError(Exception):
    """A failure on the client's side of the connection, not an error reply."""


class ConnectionClosed(ClientError):
    """The connection is closed or broke. A request without a reply has an unknown outcome."""


class ProtocolViolation(ClientError):
    """The broker sent bytes this client cannot read; the connection is closed."""
