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
)


def enum_json(value):
    """The index's text for a field-less enum: JobState and the tenancy enums in lower
    snake case, others (``PrincipalKind``) in CamelCase."""
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


if __name__ == "__main__":
    unittest.main()
