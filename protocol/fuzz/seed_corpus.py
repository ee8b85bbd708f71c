#!/usr/bin/env python3
"""Seeds the fuzz corpora from the golden vectors in protocol/vectors/.

Each vector is one complete frame in hex. It becomes:

- for ``frame_decoder``: the whole frame, plus one stream of every frame back to back;
- for ``request_decoder`` (request frames) and ``response_decoder`` (response and error
  frames): the two opcode bytes of the header followed by the body, which is the input
  layout those targets expect.

Run from anywhere: ``python3 protocol/fuzz/seed_corpus.py``. It writes into
``protocol/fuzz/corpus/<target>/`` (ignored by git) and leaves other files there alone, so
it can run again on top of a corpus the fuzzer has grown.
"""

import pathlib

FUZZ_DIR = pathlib.Path(__file__).resolve().parent
VECTORS_DIR = FUZZ_DIR.parent / "vectors"
CORPUS_DIR = FUZZ_DIR / "corpus"

# Header layout (PROTOCOL.md §2.1): length u32, kind u8, opcode u16, request id u32.
KIND_OFFSET = 4
OPCODE_SLICE = slice(5, 7)
BODY_OFFSET = 11
KIND_REQUEST = 0


def write_seed(target, name, data):
    """Writes one seed file for ``target``."""
    directory = CORPUS_DIR / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ("vector-" + name)).write_bytes(data)


def main():
    """Writes a seed for every vector and prints how many each target got."""
    counts = {"frame_decoder": 0, "request_decoder": 0, "response_decoder": 0}
    stream = bytearray()
    for path in sorted(VECTORS_DIR.glob("*.hex")):
        frame = bytes.fromhex(path.read_text().strip())
        name = path.name[: -len(".hex")]
        stream += frame
        write_seed("frame_decoder", name, frame)
        counts["frame_decoder"] += 1
        target = "request_decoder" if frame[KIND_OFFSET] == KIND_REQUEST else "response_decoder"
        write_seed(target, name, frame[OPCODE_SLICE] + frame[BODY_OFFSET:])
        counts[target] += 1
    write_seed("frame_decoder", "all-frames", bytes(stream))
    counts["frame_decoder"] += 1
    for target, count in counts.items():
        print(f"{target}: {count} seeds in {CORPUS_DIR / target}")


if __name__ == "__main__":
    main()
