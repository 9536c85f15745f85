"""laminad's HPACK decoder against the ``hpack`` package's encoder, block after block."""

from __future__ import annotations

import random

import hpack
import pytest

from lamina.core.hpack_decoder import HeaderBlockError, HeaderDecoder


def test_decodes_what_an_indexing_huffman_encoder_sends_over_many_blocks() -> None:
    rng = random.Random(7)
    encoder, decoder = hpack.Encoder(), HeaderDecoder()
    paths = [f"/containerd.services.x.v1.S/M{i}" for i in range(40)]
    for round_ in range(300):
        fields = [(":method", "POST"), (":scheme", "http"), (":path", rng.choice(paths)),
                  (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers"),
                  ("containerd-namespace", rng.choice(["default", "k8s.io", f"ns-{round_}"])),
                  ("x-big", "v" * rng.randrange(0, 3000))]
        if round_ == 150:
            encoder.header_table_size = 256  # the encoder shrinks its table: a size update follows
        sensitive = [hpack.NeverIndexedHeaderTuple("authorization", "secret")] if round_ % 7 == 0 else []
        block = encoder.encode(fields + sensitive, huffman=round_ % 3 != 0)
        assert decoder.decode(block) == fields + [(h[0], h[1]) for h in sensitive]


@pytest.mark.parametrize("block", [b"\xff", b"\x80", b"\xbe", b"\x40\x85ab", b"\x3f\xe2\x1f", b"\x82\x20"],
                         ids=["truncated-int", "index-0", "no-such-entry", "truncated-string", "table-too-big",
                              "size-update-after-a-field"])
def test_bad_blocks_are_refused(block: bytes) -> None:
    with pytest.raises(HeaderBlockError):
        HeaderDecoder().decode(block)


def test_a_block_that_expands_without_bound_is_refused() -> None:
    """Each one-byte reference repeats a 4 KB table entry: decoding stops at the header list limit."""
    entry = b"\x40\x01x\x7f\xa1\x1e" + b"v" * 4000  # literal with indexing: name "x", 4000-byte value
    with pytest.raises(HeaderBlockError, match="header list larger"):
        HeaderDecoder().decode(entry + b"\xbe" * 100_000)
