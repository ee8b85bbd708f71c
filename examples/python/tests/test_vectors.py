"""The golden vectors of protocol/vectors/ through the Python codec, in both directions.

For every vector listed in ``index.json``: the header fields match; decoding the body gives
the value the index states as JSON; encoding the decoded value gives back the body and the
whole frame byte for byte. The index's JSON conventions are in
``protocol/vectors/README.md``.
"""

import json
import pathlib
import sys
import unittest
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from taskforge import codec, errors, messages  # noqa: E402  (path set up above)

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[3]
VECTORS_DIR = REPOSITORY_ROOT / "protocol" / "vectors"

#: Decoding limit for the vectors: they are all far below the 64 MiB frame ceiling.
FRAME_BYTES_CEILING = 64 * 1024 * 1024


def load_index():
    """The entries of ``vectors/index.json``."""
    return json.loads((VECTORS_DIR / "index.json").read_text())


#: Field-less enums the index writes in lower snake case (``"ready"``, ``"past_due"``).
LOWER_CASE_ENUMS = (
    messages.JobState,
    messages.OrgStatus,
    messages.Role,
    messages.Plan,
    messages.SubscriptionStatus,
    messages.Scope,
    messages.WorkerState,
    messages.ExecutionOutcome,
    messages.LogLevel,
    messages.ParentFailure,
    messages.UniqueUntil,
    messages.OverlapPolicy,
    messages.MissedRunPolicy,
)


def enum_json(value):
    """The index's text for a field-less enum: JobState, the tenancy enums and the worker
    and execution enums in lower snake case, others (``PrincipalKind``) in CamelCase."""
    if isinstance(value, LOWER_CASE_ENUMS):
        return value.name.lower()
    return "".join(word.capitalize() for word in value.name.split("_"))


def to_json(field_type, value):
    """``value`` of wire type ``field_type`` in the JSON form of ``index.json``."""
    if isinstance(field_type, codec.Option):
        return None if value is None else to_json(field_type.inner, value)
    if isinstance(field_type, codec.Seq):
        return [to_json(field_type.item, item) for item in value]
    if isinstance(field_type, codec.Pair):
        return [to_json(field_type.first, value[0]), to_json(field_type.second, value[1])]
    if isinstance(field_type, codec.Struct):
        return {name: to_json(inner, getattr(value, name)) for name, inner in field_type.fields}
    if isinstance(field_type, codec.Enum):
        return enum_json(value)
    if isinstance(field_type, codec.Union):
        variant = next(variant for variant in field_type.variants if variant.cls is type(value))
        fields = variant.struct.fields
        if not fields:
            return variant.name
        if variant.newtype:
            name, inner = fields[0]
            return {variant.name: to_json(inner, getattr(value, name))}
        return {variant.name: to_json(variant.struct, value)}
    if field_type is codec.BYTES:
        return list(value)
    if field_type is codec.JOB_ID:
        return str(value)
    return value


def body_type(entry):
    """The Python body class for an index entry, by frame kind and opcode."""
    if entry["kind"] == codec.FrameKind.ERROR:
        return messages.ErrorBody
    request, response = messages.OPERATIONS[messages.Opcode(entry["opcode"])]
    return request if entry["kind"] == codec.FrameKind.REQUEST else response


class GoldenVectorTest(unittest.TestCase):
    """Every golden frame decodes to its stated value and re-encodes to the same bytes."""

    def test_index_lists_every_vector_file(self):
        files = sorted(path.name for path in VECTORS_DIR.glob("*.hex"))
        self.assertEqual(sorted(entry["file"] for entry in load_index()), files)

    def test_every_operation_has_a_request_and_a_response_vector(self):
        seen = {(entry["opcode"], entry["kind"]) for entry in load_index()}
        for opcode in messages.Opcode:
            with self.subTest(opcode=opcode.name):
                self.assertIn((opcode, codec.FrameKind.REQUEST), seen)
                self.assertIn((opcode, codec.FrameKind.RESPONSE), seen)

    def test_every_error_code_has_a_vector_and_a_class(self):
        names = {entry["error_name"] for entry in load_index() if entry["error_name"]}
        classes = {cls.NAME for cls in errors.ERRORS_BY_CODE.values()}
        self.assertEqual(names, classes)
        for code, cls in errors.ERRORS_BY_CODE.items():
            self.assertEqual(cls.CODE, code)

    def test_every_vector_decodes_and_re_encodes(self):
        for entry in load_index():
            with self.subTest(vector=entry["file"]):
                frame = bytes.fromhex((VECTORS_DIR / entry["file"]).read_text().strip())
                header = codec.decode_header(frame[: codec.HEADER_BYTES], FRAME_BYTES_CEILING)
                body = frame[codec.HEADER_BYTES :]
                self.assertEqual(header.body_bytes, len(body))
                self.assertEqual(
                    (header.kind, header.opcode, header.request_id),
                    (entry["kind"], entry["opcode"], entry["request_id"]),
                )
                self.assertEqual(body.hex(), entry["body_hex"])

                cls = body_type(entry)
                self.assertEqual(cls.__name__, entry["body_type"])
                value = messages.decode_body(cls, body)
                self.assertEqual(to_json(messages.struct_type(cls), value), entry["body"])

                encoded = messages.encode_body(value)
                self.assertEqual(encoded, body)
                self.assertEqual(
                    codec.encode_frame(header.kind, header.opcode, header.request_id, encoded),
                    frame,
                )

    def test_error_vectors_raise_their_typed_exception(self):
        for entry in load_index():
            if entry["error_name"] is None:
                continue
            with self.subTest(vector=entry["file"]):
                body = bytes.fromhex(entry["body_hex"])
                error = errors.error_from_body(messages.decode_body(messages.ErrorBody, body))
                self.assertEqual(error.name, entry["error_name"])
                self.assertEqual(error.code, entry["body"]["code"])
                self.assertEqual(error.message, entry["body"]["message"])
                self.assertIsInstance(error, errors.TaskForgeError)

    def test_job_ids_use_uuid_text(self):
        entry = next(e for e in load_index() if e["file"] == "0x0208_JOB_GET.request.hex")
        value = messages.decode_body(messages.JobRef, bytes.fromhex(entry["body_hex"]))
        self.assertEqual(value.job_id, uuid.UUID(entry["body"]["job_id"]))


#: The operations added with workers, executions, logs, progress and results.
WORKER_AND_EXECUTION_OPCODES = (
    messages.Opcode.PROGRESS,
    messages.Opcode.LOG,
    messages.Opcode.LOG_TAIL,
    messages.Opcode.EXECUTION_LIST,
    messages.Opcode.JOB_RESULTS,
    messages.Opcode.WORKER_REGISTER,
    messages.Opcode.HEARTBEAT,
    messages.Opcode.WORKER_LIST,
    messages.Opcode.WORKER_GET,
    messages.Opcode.WORKER_QUIET,
    messages.Opcode.WORKER_TERMINATE,
    messages.Opcode.WORKER_ASSIGN,
    messages.Opcode.ASSIGNMENT_LIST,
)


def vector(file_name):
    """The decoded body of one vector file, by its index entry."""
    entry = next(e for e in load_index() if e["file"] == file_name)
    return messages.decode_body(body_type(entry), bytes.fromhex(entry["body_hex"]))


class WorkerVectorsTest(unittest.TestCase):
    """The worker and execution vectors decode to the Python values a client works with."""

    def test_every_new_operation_round_trips_every_vector(self):
        entries = [e for e in load_index() if e["opcode"] in WORKER_AND_EXECUTION_OPCODES]
        kinds = {(e["opcode"], e["kind"]) for e in entries}
        for opcode in WORKER_AND_EXECUTION_OPCODES:
            for kind in (codec.FrameKind.REQUEST, codec.FrameKind.RESPONSE):
                self.assertIn((opcode, kind), kinds, "%s %s" % (opcode.name, kind.name))
        for entry in entries:
            with self.subTest(vector=entry["file"]):
                body = bytes.fromhex(entry["body_hex"])
                value = messages.decode_body(body_type(entry), body)
                self.assertEqual(messages.encode_body(value), body)

    def test_heartbeat_commands(self):
        self.assertEqual(
            vector("0x0401_HEARTBEAT.response.hex").command, messages.RunCommand()
        )
        self.assertEqual(
            vector("0x0401_HEARTBEAT.response.quiet.hex").command, messages.QuietCommand()
        )
        terminate = vector("0x0401_HEARTBEAT.response.terminate.hex")
        self.assertEqual(terminate.command, messages.TerminateCommand(1764338430000))
        self.assertEqual(len(terminate.cancelled_jobs), 2)
        reassigned = vector("0x0401_HEARTBEAT.response.assignments.hex")
        self.assertEqual(
            reassigned.assignments,
            [
                messages.QueueAssignment("reports.daily", 5, True),
                messages.QueueAssignment("emails", 1, False),
            ],
        )
        self.assertIsNone(vector("0x0401_HEARTBEAT.response.hex").assignments)

    def test_changed_bodies_carry_their_appended_fields(self):
        fetch = vector("0x0202_FETCH.request.worker.hex")
        self.assertEqual((fetch.worker_id, fetch.weights), (7, [3, 1]))
        plain = vector("0x0202_FETCH.request.hex")
        self.assertEqual((plain.worker_id, plain.weights), (None, []))
        self.assertIn("Traceback", vector("0x0205_FAIL.request.details.hex").error_details)
        self.assertIsNone(vector("0x0205_FAIL.request.hex").error_details)
        done = vector("0x0208_JOB_GET.response.hex")
        self.assertEqual(done.executions, 2)
        self.assertEqual(done.latest_execution.outcome, messages.ExecutionOutcome.SUCCEEDED)
        self.assertEqual((done.progress.percent, done.progress.message), (100, "done"))
        fresh = vector("0x0208_JOB_GET.response.never_delivered.hex")
        self.assertEqual(
            (fresh.executions, fresh.latest_execution, fresh.progress), (0, None, None)
        )

    def test_appended_fields_are_required_as_in_rust(self):
        # PROTOCOL.md §12: FETCH's worker_id/weights and FAIL's error_details are part of
        # every version 1 body; a body that stops before them does not decode.
        for file_name, cut in (
            ("0x0202_FETCH.request.hex", 2),
            ("0x0205_FAIL.request.hex", 1),
            ("0x0208_JOB_GET.response.never_delivered.hex", 3),
        ):
            with self.subTest(vector=file_name):
                entry = next(e for e in load_index() if e["file"] == file_name)
                body = bytes.fromhex(entry["body_hex"])
                with self.assertRaises(codec.DecodeError):
                    messages.decode_body(body_type(entry), body[:-cut])

    def test_logs_and_executions(self):
        tail = vector("0x020c_LOG_TAIL.response.hex")
        self.assertEqual([line.seq for line in tail.lines], [1, 2, 3])
        self.assertEqual((tail.next_after, tail.open), (3, True))
        self.assertEqual(tail.lines[1].level, messages.LogLevel.WARN)
        waited = vector("0x020c_LOG_TAIL.response.waited.hex")
        self.assertEqual((waited.lines, waited.next_after, waited.open), ([], 3, True))
        history = vector("0x020d_EXECUTION_LIST.response.next_page.hex")
        self.assertEqual(
            [(e.execution, e.attempt, e.outcome) for e in history.executions],
            [
                (3, 3, messages.ExecutionOutcome.WORKER_LOST),
                (4, 1, messages.ExecutionOutcome.CANCELLED),
            ],
        )
        running = vector("0x020d_EXECUTION_LIST.response.running.hex").executions[0]
        self.assertEqual((running.outcome, running.finished_at_ms), (None, None))

    def test_worker_states(self):
        listed = vector("0x0402_WORKER_LIST.response.hex")
        self.assertEqual(
            [w.state for w in listed.workers],
            [messages.WorkerState.ACTIVE, messages.WorkerState.QUIET],
        )
        self.assertTrue(all(w.state.is_live for w in listed.workers))
        lost = vector("0x0402_WORKER_LIST.response.lost.hex").workers[0]
        self.assertEqual(lost.state, messages.WorkerState.LOST)
        self.assertFalse(lost.state.is_live)


#: The cron schedule operations.
SCHEDULE_OPCODES = (
    messages.Opcode.SCHEDULE_CREATE,
    messages.Opcode.SCHEDULE_GET,
    messages.Opcode.SCHEDULE_LIST,
    messages.Opcode.SCHEDULE_UPDATE,
    messages.Opcode.SCHEDULE_DELETE,
    messages.Opcode.SCHEDULE_PAUSE,
    messages.Opcode.SCHEDULE_RESUME,
)


class ScheduleVectorsTest(unittest.TestCase):
    """The schedule vectors decode to the Python values a client works with."""

    def test_every_schedule_vector_round_trips(self):
        entries = [e for e in load_index() if e["opcode"] in SCHEDULE_OPCODES]
        kinds = {(e["opcode"], e["kind"]) for e in entries}
        for opcode in SCHEDULE_OPCODES:
            for kind in (codec.FrameKind.REQUEST, codec.FrameKind.RESPONSE):
                self.assertIn((opcode, kind), kinds, "%s %s" % (opcode.name, kind.name))
        for entry in entries:
            with self.subTest(vector=entry["file"]):
                body = bytes.fromhex(entry["body_hex"])
                value = messages.decode_body(body_type(entry), body)
                self.assertEqual(messages.encode_body(value), body)

    def test_schedule_keys_and_policies(self):
        self.assertEqual(
            vector("0x0501_SCHEDULE_GET.request.hex").schedule, messages.ScheduleById(3)
        )
        self.assertEqual(
            vector("0x0501_SCHEDULE_GET.request.name.hex").schedule,
            messages.ScheduleByName("digest"),
        )
        self.assertEqual(messages.schedule_key(3), messages.ScheduleById(3))
        self.assertEqual(messages.schedule_key("digest"), messages.ScheduleByName("digest"))
        created = vector("0x0500_SCHEDULE_CREATE.response.hex")
        self.assertEqual(
            (created.cron, created.time_zone, created.template.queue),
            ("0 30 2 * * *", "Europe/Berlin", "reports.daily"),
        )
        self.assertEqual(created.overlap, messages.OverlapPolicy.SKIP)
        self.assertEqual(created.missed_runs, messages.MissedRunPolicy.RUN_ONCE)
        paused = vector("0x0501_SCHEDULE_GET.response.paused.hex")
        self.assertTrue(paused.paused)
        self.assertIsNone(paused.next_fire_at_ms)
        self.assertIn("pending_jobs", paused.last_skip_reason)
        self.assertEqual(paused.overlap, messages.OverlapPolicy.ALLOW)
        self.assertEqual(paused.missed_runs, messages.MissedRunPolicy.SKIP)


if __name__ == "__main__":
    unittest.main()
