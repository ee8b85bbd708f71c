"""The wire format: frame headers and the body encoding (bincode 2 ``standard()``).

Everything here follows ``protocol/PROTOCOL.md`` §2 (framing) and §3 (body encoding):

- A frame is an 11-byte big-endian header ``length u32, kind u8, opcode u16,
  request_id u32`` and a body; ``length`` counts the 7 header bytes after it plus the body.
- Body integers wider than a byte are little-endian varints; ``i32`` is zigzag-mapped
  first; strings, byte strings and lists carry a varint length; ``Option`` is a 0/1 tag
  byte; enums are a varint variant index followed by the variant's fields.

The second half of this module turns those rules into *field types*: small objects with an
``encode(writer, value)`` and a ``decode(reader)`` method (``U32``, ``STRING``,
``Option(I32)``, ``Struct(NewJob)``, ...). :mod:`taskforge.messages` declares every message
as a dataclass whose fields name their field type, in wire order, so each message reads
like its table in PROTOCOL.md and needs no hand-written encoder.
"""

import dataclasses
import enum
import struct
import uuid

#: ``length``, ``kind``, ``opcode``, ``request_id``; network byte order.
HEADER = struct.Struct(">IBHI")

#: Size of the whole header, ``length`` included.
HEADER_BYTES = HEADER.size

#: Header bytes counted by ``length``: kind, opcode, request id.
HEADER_AFTER_LENGTH_BYTES = HEADER_BYTES - 4

#: Largest frame ``length`` either side may send before the handshake completes.
HANDSHAKE_FRAME_BYTES_MAX = 4096

#: Varint markers: the byte says how many little-endian bytes follow.
_VARINT_U16 = 0xFB
_VARINT_U32 = 0xFC
_VARINT_U64 = 0xFD
_VARINT_SINGLE_BYTE_MAX = 250
_VARINT_WIDTH_BYTES = {_VARINT_U16: 2, _VARINT_U32: 4, _VARINT_U64: 8}


class FrameKind(enum.IntEnum):
    """The ``kind`` byte of a frame header."""

    REQUEST = 0
    RESPONSE = 1
    ERROR = 2
    EVENT = 3


class DecodeError(ValueError):
    """Bytes that do not follow the encoding rules (PROTOCOL.md §3.5)."""


@dataclasses.dataclass(frozen=True)
class FrameHeader:
    """A decoded frame header. ``body_bytes`` is ``length`` minus the 7 header bytes."""

    kind: FrameKind
    opcode: int
    request_id: int
    body_bytes: int


def encode_frame(kind, opcode, request_id, body):
    """Returns the whole frame (header and body) for ``body``."""
    return HEADER.pack(HEADER_AFTER_LENGTH_BYTES + len(body), kind, opcode, request_id) + body


def decode_header(header, frame_bytes_max):
    """Decodes the 11 header bytes of a frame.

    ``frame_bytes_max`` is the largest ``length`` accepted; checking it here, before the body
    is read, means a peer announcing a huge frame costs nothing. Raises :class:`DecodeError`
    for a length out of range or an unknown kind.
    """
    if len(header) != HEADER_BYTES:
        raise DecodeError("a frame header is %d bytes, got %d" % (HEADER_BYTES, len(header)))
    length, kind, opcode, request_id = HEADER.unpack(header)
    if length < HEADER_AFTER_LENGTH_BYTES:
        raise DecodeError("frame length %d is shorter than the 7-byte header" % length)
    if length > frame_bytes_max:
        raise DecodeError("frame length %d is over the %d-byte limit" % (length, frame_bytes_max))
    try:
        frame_kind = FrameKind(kind)
    except ValueError:
        raise DecodeError("unknown frame kind %d" % kind) from None
    return FrameHeader(frame_kind, opcode, request_id, length - HEADER_AFTER_LENGTH_BYTES)


class Writer:
    """Appends values to a body in the ``standard()`` encoding."""

    def __init__(self):
        self.out = bytearray()

    def uint(self, value, width_bytes):
        """An unsigned integer of a ``width_bytes``-byte type (2, 4 or 8) as a varint."""
        if not 0 <= value < 1 << (8 * width_bytes):
            raise ValueError(
                "%r does not fit in an unsigned %d-byte integer" % (value, width_bytes)
            )
        if value <= _VARINT_SINGLE_BYTE_MAX:
            self.out.append(value)
        elif value < 1 << 16:
            self.out.append(_VARINT_U16)
            self.out += value.to_bytes(2, "little")
        elif value < 1 << 32:
            self.out.append(_VARINT_U32)
            self.out += value.to_bytes(4, "little")
        else:
            self.out.append(_VARINT_U64)
            self.out += value.to_bytes(8, "little")

    def i32(self, value):
        """A signed 32-bit integer: zigzag (0, -1, 1, -2, ... to 0, 1, 2, 3, ...), then a varint."""
        if not -(1 << 31) <= value < 1 << 31:
            raise ValueError("%r does not fit in an i32" % (value,))
        self.uint(2 * value if value >= 0 else -2 * value - 1, 4)

    def u8(self, value):
        """One raw byte, no varint marker."""
        if not 0 <= value <= 0xFF:
            raise ValueError("%r does not fit in a byte" % (value,))
        self.out.append(value)

    def raw(self, data):
        """Bytes with no length in front (fixed-size arrays such as a job id)."""
        self.out += data

    def length(self, count):
        """A length or element count (a u64 varint)."""
        self.uint(count, 8)


class Reader:
    """Reads values from a body in the ``standard()`` encoding.

    Every read checks that the bytes it needs are there before taking them, so no claimed
    length can make the reader allocate more than the body holds.
    """

    def __init__(self, data):
        self.data = bytes(data)
        self.position = 0

    def remaining(self):
        """Bytes not read yet."""
        return len(self.data) - self.position

    def take(self, count):
        """The next ``count`` bytes."""
        if count > self.remaining():
            raise DecodeError(
                "body ends early: %d bytes needed at offset %d, %d left"
                % (count, self.position, self.remaining())
            )
        start = self.position
        self.position += count
        return self.data[start : self.position]

    def uint(self, width_bytes):
        """A varint for a ``width_bytes``-byte unsigned type; a wider marker is refused."""
        first = self.take(1)[0]
        if first <= _VARINT_SINGLE_BYTE_MAX:
            return first
        marker_width_bytes = _VARINT_WIDTH_BYTES.get(first)
        if marker_width_bytes is None or marker_width_bytes > width_bytes:
            raise DecodeError(
                "varint marker %#04x is not valid for a %d-byte integer" % (first, width_bytes)
            )
        return int.from_bytes(self.take(marker_width_bytes), "little")

    def i32(self):
        """A zigzag-encoded signed 32-bit integer."""
        zigzag = self.uint(4)
        return zigzag // 2 if zigzag % 2 == 0 else -(zigzag // 2) - 1

    def u8(self):
        """One raw byte."""
        return self.take(1)[0]

    def length(self):
        """A length or element count, checked against the bytes left.

        Every string byte and every list element of this protocol takes at least one byte on
        the wire, so a count larger than what remains cannot be valid.
        """
        count = self.uint(8)
        if count > self.remaining():
            raise DecodeError(
                "length %d is more than the %d bytes left" % (count, self.remaining())
            )
        return count


# --- Field types -------------------------------------------------------------------------


class UInt:
    """An unsigned integer type of ``width_bytes`` bytes, written as a varint."""

    def __init__(self, name, width_bytes):
        self.name = name
        self.width_bytes = width_bytes

    def encode(self, writer, value):
        """Writes ``value``."""
        writer.uint(value, self.width_bytes)

    def decode(self, reader):
        """Reads a value."""
        return reader.uint(self.width_bytes)


class _I32:
    """``i32``: zigzag, then varint."""

    name = "i32"

    def encode(self, writer, value):
        """Writes ``value``."""
        writer.i32(value)

    def decode(self, reader):
        """Reads a value."""
        return reader.i32()


class _U8:
    """``u8``: one raw byte."""

    name = "u8"

    def encode(self, writer, value):
        """Writes ``value``."""
        writer.u8(value)

    def decode(self, reader):
        """Reads a value."""
        return reader.u8()


class _Bool:
    """``bool``: the byte 0 or 1."""

    name = "bool"

    def encode(self, writer, value):
        """Writes ``value``."""
        writer.u8(1 if value else 0)

    def decode(self, reader):
        """Reads a value; any byte other than 0 or 1 is refused."""
        byte = reader.u8()
        if byte > 1:
            raise DecodeError("bool byte %d is not 0 or 1" % byte)
        return byte == 1


class _Bytes:
    """``bytes``: a varint length, then the bytes."""

    name = "bytes"

    def encode(self, writer, value):
        """Writes ``value`` (any bytes-like object)."""
        writer.length(len(value))
        writer.raw(value)

    def decode(self, reader):
        """Reads a value as ``bytes``."""
        return reader.take(reader.length())


class _String:
    """``string``: a varint byte length, then UTF-8."""

    name = "string"

    def encode(self, writer, value):
        """Writes ``value`` (a ``str``)."""
        _BYTES.encode(writer, value.encode("utf-8"))

    def decode(self, reader):
        """Reads a value; invalid UTF-8 is refused."""
        data = _BYTES.decode(reader)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DecodeError("string is not valid UTF-8: %s" % error) from None


class _JobId:
    """``JobId``: 16 raw bytes (a UUID in its usual byte order), as :class:`uuid.UUID`."""

    name = "JobId"

    def encode(self, writer, value):
        """Writes ``value`` (a :class:`uuid.UUID`)."""
        writer.raw(value.bytes)

    def decode(self, reader):
        """Reads a value."""
        return uuid.UUID(bytes=reader.take(16))


_BYTES = _Bytes()

U16 = UInt("u16", 2)
U32 = UInt("u32", 4)
U64 = UInt("u64", 8)
I32 = _I32()
U8 = _U8()
BOOL = _Bool()
BYTES = _BYTES
STRING = _String()
JOB_ID = _JobId()


class Option:
    """``Option<T>``: the byte 0 for ``None``, or 1 followed by the value."""

    def __init__(self, inner):
        self.inner = inner
        self.name = "Option<%s>" % inner.name

    def encode(self, writer, value):
        """Writes ``value`` or ``None``."""
        if value is None:
            writer.u8(0)
        else:
            writer.u8(1)
            self.inner.encode(writer, value)

    def decode(self, reader):
        """Reads a value or ``None``; a tag other than 0 or 1 is refused."""
        tag = reader.u8()
        if tag > 1:
            raise DecodeError("option tag %d is not 0 or 1" % tag)
        return self.inner.decode(reader) if tag == 1 else None


class Seq:
    """``Vec<T>``: a varint count, then the elements, as a Python list."""

    def __init__(self, item):
        self.item = item
        self.name = "Vec<%s>" % item.name

    def encode(self, writer, value):
        """Writes every element of ``value`` (any sized iterable)."""
        writer.length(len(value))
        for item in value:
            self.item.encode(writer, item)

    def decode(self, reader):
        """Reads the elements into a list."""
        return [self.item.decode(reader) for _ in range(reader.length())]


class Pair:
    """``(A, B)``: A then B, as a Python tuple."""

    def __init__(self, first, second):
        self.first = first
        self.second = second
        self.name = "(%s, %s)" % (first.name, second.name)

    def encode(self, writer, value):
        """Writes the two items of ``value``."""
        first, second = value
        self.first.encode(writer, first)
        self.second.encode(writer, second)

    def decode(self, reader):
        """Reads a tuple."""
        return (self.first.decode(reader), self.second.decode(reader))


def wire(field_type, **options):
    """Declares a dataclass field and its wire type: ``queue: str = wire(STRING)``.

    ``options`` go to :func:`dataclasses.field` (``default=None``, ``default_factory=list``).
    The declaration order of the fields is their wire order.
    """
    return dataclasses.field(metadata={"wire": field_type}, **options)


class Struct:
    """A struct: the fields of a dataclass declared with :func:`wire`, in order."""

    def __init__(self, cls):
        self.cls = cls
        self.name = cls.__name__
        self.fields = [(field.name, field.metadata["wire"]) for field in dataclasses.fields(cls)]

    def encode(self, writer, value):
        """Writes every field of ``value``."""
        if not isinstance(value, self.cls):
            raise TypeError("expected %s, got %r" % (self.name, value))
        for name, field_type in self.fields:
            field_type.encode(writer, getattr(value, name))

    def decode(self, reader):
        """Reads every field and builds the dataclass."""
        return self.cls(**{name: field_type.decode(reader) for name, field_type in self.fields})


class Enum:
    """An enum whose variants have no fields, as a Python :class:`enum.IntEnum`.

    The ``IntEnum`` values are the wire indices.
    """

    def __init__(self, cls):
        self.cls = cls
        self.name = cls.__name__

    def encode(self, writer, value):
        """Writes the variant index."""
        writer.uint(int(self.cls(value)), 4)

    def decode(self, reader):
        """Reads a variant; an index the enum does not have is refused."""
        index = reader.uint(4)
        try:
            return self.cls(index)
        except ValueError:
            raise DecodeError("%s has no variant %d" % (self.name, index)) from None


class Variant:
    """One variant of a :class:`Union`: its wire name and the dataclass that holds it.

    ``newtype`` marks a variant with one unnamed field in the Rust type (``RootToken(String)``,
    ``At(u64)``); it matters only for the JSON form the golden-vector index uses.
    """

    def __init__(self, name, cls, newtype=False):
        self.name = name
        self.cls = cls
        self.struct = Struct(cls)
        self.newtype = newtype


class Union:
    """An enum with fields: a varint variant index, then that variant's fields.

    Each variant is its own dataclass, so a value's class says which variant it is.
    """

    def __init__(self, name, variants):
        self.name = name
        self.variants = variants
        self._index_by_class = {variant.cls: index for index, variant in enumerate(variants)}

    def encode(self, writer, value):
        """Writes the index of ``value``'s variant, then its fields."""
        index = self._index_by_class.get(type(value))
        if index is None:
            raise TypeError("%r is not a variant of %s" % (value, self.name))
        writer.uint(index, 4)
        self.variants[index].struct.encode(writer, value)

    def decode(self, reader):
        """Reads a variant; an index the enum does not have is refused."""
        index = reader.uint(4)
        if index >= len(self.variants):
            raise DecodeError("%s has no variant %d" % (self.name, index))
        return self.variants[index].struct.decode(reader)
