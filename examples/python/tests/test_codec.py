"""The encoding rules of PROTOCOL.md §2 and §3 in the Python codec, value by value.

The worked examples are rows of the table in PROTOCOL.md §3.4; the refusals are the list
in §3.5; trailing bytes and hostile lengths follow §3.6.
"""

import pathlib
import sys
import time
import unittest
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from taskforge import codec, messages  # noqa: E402  (path set up above)
from taskforge.codec import (  # noqa: E402
    BOOL,
    BYTES,
    I32,
    JOB_ID,
    STRING,
    U16,
    U32,
    U64,
    U8,
    DecodeError,
    Option,
    Pair,
    Reader,
    Seq,
    Writer,
)

#: (field type, value, encoding in hex) from PROTOCOL.md §3.4.
WORKED_EXAMPLES = [
    (U32, 0, "00"),
    (U32, 250, "fa"),
    (U32, 251, "fbfb00"),
    (U32, 300, "fb2c01"),
    (U32, 65535, "fbffff"),
    (U32, 65536, "fc00000100"),
    (U32, 4294967295, "fcffffffff"),
    (U16, 1, "01"),
    (U16, 60000, "fb60ea"),
    (U64, 4294967296, "fd0000000001000000"),
    (U64, 1764338400000, "fd007bc3ca9a010000"),
    (U64, 18446744073709551615, "fdffffffffffffffff"),
    (I32, 0, "00"),
    (I32, -1, "01"),
    (I32, 1, "02"),
    (I32, -5, "09"),
    (I32, 125, "fa"),
    (I32, -126, "fbfb00"),
    (I32, -200, "fb8f01"),
    (I32, 2147483647, "fcfeffffff"),
    (I32, -2147483648, "fcffffffff"),
    (U8, 20, "14"),
    (U8, 255, "ff"),
    (BOOL, False, "00"),
    (BOOL, True, "01"),
    (STRING, "", "00"),
    (STRING, "emails", "06656d61696c73"),
    (STRING, "é", "02c3a9"),
    (BYTES, b"\x01\x02\x03", "03010203"),
    (BYTES, b"", "00"),
    (Seq(STRING), ["a", "bc"], "020161026263"),
    (Seq(U32), [300, 1], "02fb2c0101"),
    (Option(U32), None, "00"),
    (Option(U32), 0, "0100"),
    (Option(U32), 300, "01fb2c01"),
    (Option(I32), -5, "0109"),
    (Seq(Pair(STRING, STRING)), [("k", "v")], "01016b0176"),
    (messages.RETRY, messages.RetryBackoff(), "00"),
    (messages.RETRY, messages.RetryAt(1764338400000), "01fd007bc3ca9a010000"),
    (messages.RETRY, messages.RetryNever(), "02"),
    (messages.JOB_STATE, messages.JobState.READY, "02"),
    (messages.JOB_STATE, messages.JobState.EXPIRED, "07"),
    (messages.CREDENTIALS, messages.RootToken("t"), "000174"),
    (messages.CREDENTIALS, messages.Password("a", "b"), "0201610162"),
    (messages.ERROR_DETAILS, messages.RetryAfterDetails(250), "02fa"),
    (messages.WORKER_STATE, messages.WorkerState.TERMINATING, "02"),
    (messages.WORKER_COMMAND, messages.RunCommand(), "00"),
    (messages.WORKER_COMMAND, messages.QuietCommand(), "01"),
    (messages.WORKER_COMMAND, messages.TerminateCommand(1764338430000), "02fd30f0c3ca9a010000"),
    (messages.EXECUTION_OUTCOME, messages.ExecutionOutcome.WORKER_LOST, "03"),
    (messages.LOG_LEVEL, messages.LogLevel.WARN, "03"),
    (
        messages.QUEUE_ASSIGNMENT,
        messages.QueueAssignment("emails", 3, True),
        "06656d61696c730301",
    ),
    (
        messages.BACKOFF,
        messages.Backoff(initial_ms=1000, factor_percent=200, max_ms=3600000, jitter_percent=20),
        "fbe803c8fc80ee360014",
    ),
    (
        messages.PARENT_REF,
        messages.ParentJob(uuid.UUID("00010203-0405-0607-0809-0a0b0c0d0e0f")),
        "00000102030405060708090a0b0c0d0e0f",
    ),
    (messages.PARENT_REF, messages.ParentInBatch(0), "0100"),
    (messages.PARENT_REF, messages.ParentInBatch(300), "01fb2c01"),
    (messages.PARENT_FAILURE, messages.ParentFailure.CANCEL, "00"),
    (messages.PARENT_FAILURE, messages.ParentFailure.RUN, "01"),
    (messages.UNIQUE_UNTIL, messages.UniqueUntil.FINISHED, "01"),
    (
        messages.struct_type(messages.UniqueKey),
        messages.UniqueKey("inv-7", messages.UniqueUntil.STARTED, 60000),
        "05696e762d37010001fb60ea",
    ),
    (JOB_ID, uuid.UUID("00010203-0405-0607-0809-0a0b0c0d0e0f"), "000102030405060708090a0b0c0d0e0f"),
    (messages.struct_type(messages.Empty), messages.Empty(), ""),
]


def encode(field_type, value):
    """``value`` encoded as ``field_type``."""
    writer = Writer()
    field_type.encode(writer, value)
    return bytes(writer.out)


def decode(field_type, data):
    """``data`` decoded as ``field_type``."""
    return field_type.decode(Reader(data))


class WorkedExamplesTest(unittest.TestCase):
    """PROTOCOL.md §3.4: every example encodes to its bytes and decodes back."""

    def test_worked_examples_encode_and_decode(self):
        for field_type, value, expected_hex in WORKED_EXAMPLES:
            with self.subTest(type=field_type.name, value=value):
                self.assertEqual(encode(field_type, value).hex(), expected_hex)
                self.assertEqual(decode(field_type, bytes.fromhex(expected_hex)), value)

    def test_values_out_of_range_are_refused_when_encoding(self):
        for field_type, value in [(U16, 1 << 16), (U32, -1), (I32, 1 << 31), (U8, 256)]:
            with self.subTest(type=field_type.name, value=value):
                with self.assertRaises(ValueError):
                    encode(field_type, value)


class RefusalsTest(unittest.TestCase):
    """PROTOCOL.md §3.5: what a decoder refuses, and the one longer form it accepts."""

    def assert_refused(self, field_type, hex_bytes):
        with self.assertRaises(DecodeError):
            decode(field_type, bytes.fromhex(hex_bytes))

    def test_varint_marker_wider_than_the_field(self):
        self.assert_refused(U16, "fc00000100")
        self.assert_refused(U32, "fd0000000001000000")
        self.assert_refused(I32, "fd0000000001000000")
        self.assert_refused(U64, "fe" + "00" * 16)
        self.assert_refused(U64, "ff")

    def test_bad_bool_option_tag_and_variant(self):
        self.assert_refused(BOOL, "02")
        self.assert_refused(Option(U32), "0200")
        self.assert_refused(messages.JOB_STATE, "08")
        self.assert_refused(messages.RETRY, "03")
        self.assert_refused(messages.WORKER_STATE, "05")
        self.assert_refused(messages.WORKER_COMMAND, "03")
        self.assert_refused(messages.LOG_LEVEL, "05")

    def test_invalid_utf8_and_short_bodies(self):
        self.assert_refused(STRING, "02c328")
        self.assert_refused(STRING, "0561")
        self.assert_refused(JOB_ID, "00" * 15)
        self.assert_refused(U32, "fb00")

    def test_a_longer_varint_form_is_accepted(self):
        self.assertEqual(decode(U32, bytes.fromhex("fb0500")), 5)


class BodyTest(unittest.TestCase):
    """PROTOCOL.md §3.6 and §2: trailing bytes, hostile lengths, frame headers."""

    def test_trailing_bytes_after_a_body_are_ignored(self):
        body = messages.encode_body(messages.Pong(server_time_ms=1764338400000))
        decoded = messages.decode_body(messages.Pong, body + b"\x01\x02\x03")
        self.assertEqual(decoded, messages.Pong(1764338400000))

    def test_a_count_of_two_to_the_sixty_is_refused_at_once(self):
        hostile = bytes.fromhex("fd0000000000000010")
        for cls in (
            messages.EnqueueBatchRequest,
            messages.FetchResponse,
            messages.QueueName,
            messages.WorkerList,
            messages.ExecutionList,
            messages.AssignmentList,
        ):
            with self.subTest(type=cls.__name__):
                started = time.monotonic()
                with self.assertRaises(DecodeError):
                    messages.decode_body(cls, hostile)
                self.assertLess(time.monotonic() - started, 0.1)

    def test_frame_header_checks_length_and_kind(self):
        header = codec.decode_header(bytes.fromhex("0000000700000200000002"), 4096)
        self.assertEqual(header, codec.FrameHeader(codec.FrameKind.REQUEST, 2, 2, 0))
        for hex_header in (
            "0000100100000200000002",  # length 4097 over a 4096 limit
            "0000000600000200000002",  # length shorter than the header
            "0000000704000200000002",  # kind 4
        ):
            with self.subTest(header=hex_header):
                with self.assertRaises(DecodeError):
                    codec.decode_header(bytes.fromhex(hex_header), 4096)

    def test_every_opcode_has_request_and_response_types(self):
        for opcode in messages.Opcode:
            with self.subTest(opcode=opcode.name):
                request = messages.request_type(opcode)
                response = messages.response_type(opcode)
                self.assertTrue(hasattr(request, "__dataclass_fields__"))
                self.assertTrue(hasattr(response, "__dataclass_fields__"))
        with self.assertRaises(ValueError):
            messages.request_type(0x7777)


class SecretsTest(unittest.TestCase):
    """Credentials and secret-carrying bodies never show a secret in their ``repr``."""

    SECRET = "5c81a6cbf0153a5f84a9cef3183d6287acd1f61b40658aafd4f91e43688db2d7"
    KEY = "tf_3f9a0c1d2e4b5a69_" + SECRET

    def test_reprs_hide_secrets(self):
        key_info = messages.ApiKeyInfo("3f9a0c1d2e4b5a69", 5, "k", [], 0, None, None, None)
        values = [
            messages.RootToken(self.SECRET),
            messages.ApiKey(self.KEY),
            messages.ApiKey("not a key " + self.SECRET),
            messages.Password("ops@example.com", self.SECRET),
            messages.HelloRequest(1, "taskforge-py", "0.1.0", messages.ApiKey(self.KEY), 5),
            messages.UserCreate(2, "ops@example.com", self.SECRET, messages.Role.OWNER),
            messages.UserSetPassword(7, self.SECRET),
            messages.ApiKeySecret(key_info, self.KEY),
        ]
        for value in values:
            with self.subTest(value=type(value).__name__):
                self.assertNotIn(self.SECRET, repr(value))
                self.assertNotIn(self.SECRET, str(value))
        self.assertIn("3f9a0c1d2e4b5a69", repr(messages.ApiKey(self.KEY)))
        self.assertIn("ops@example.com", repr(messages.Password("ops@example.com", "x" * 12)))

    def test_api_key_shape(self):
        self.assertEqual(messages.ApiKey.parse(self.KEY).key_id, "3f9a0c1d2e4b5a69")
        for bad in [
            "tf_3f9a0c1d2e4b5a69",
            "tf_3F9A0C1D2E4B5A69_" + self.SECRET,
            "tk_3f9a0c1d2e4b5a69_" + self.SECRET,
            "tf_3f9a0c1d2e4b5a6_" + self.SECRET,
            self.KEY + "0",
        ]:
            with self.subTest(key=bad):
                with self.assertRaises(ValueError) as raised:
                    messages.ApiKey.parse(bad)
                self.assertNotIn(self.SECRET, str(raised.exception))
                self.assertIsNone(messages.ApiKey(bad).key_id)


if __name__ == "__main__":
    unittest.main()
