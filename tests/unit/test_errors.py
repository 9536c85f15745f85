"""Error classes map to gRPC codes and back without losing the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.core import errors


@pytest.mark.parametrize(("cls", "code"), [
    (errors.InvalidArgument, 3), (errors.NotFound, 5), (errors.AlreadyExists, 6),
    (errors.FailedPrecondition, 9), (errors.Conflict, 9),
    (errors.OutOfRange, 11), (errors.NotImplemented_, 12), (errors.Unavailable, 14),
])
def test_round_trip(cls: type[errors.LaminaError], code: int) -> None:
    exc = cls("container 'x'")
    assert errors.status_code(exc) == code
    back = errors.from_status(code, str(exc))
    assert isinstance(back, errors._CLASSES[code])
    assert back.context == "container 'x'"
    assert str(back) == str(exc).replace(exc.text, back.text)


def test_plain_exceptions_are_unknown_and_bare_class_text_has_no_context() -> None:
    assert errors.status_code(ValueError("x")) == errors.CODE_UNKNOWN
    assert errors.from_status(5, "not found").context == ""
    assert str(errors.NotFound("container 'x'")) == "container 'x': not found"


def test_deadline_and_cancellation_map_to_their_codes_with_gos_words() -> None:
    import asyncio

    assert errors.status_code(TimeoutError()) == errors.CODE_DEADLINE_EXCEEDED
    assert errors.status_message(TimeoutError()) == "context deadline exceeded"
    assert errors.status_code(asyncio.CancelledError()) == errors.CODE_CANCELLED
    assert errors.status_message(asyncio.CancelledError()) == "context canceled"
    assert errors.status_message(errors.NotFound("x")) == "x: not found"


def test_a_name_too_long_is_the_callers_invalid_argument(tmp_path: Path) -> None:
    """A layer entry or key longer than NAME_MAX: the real kernel's ENAMETOOLONG, reported as bad input."""
    name = "n" * 300
    with pytest.raises(OSError) as raised:
        open(tmp_path / name, "w")  # noqa: SIM115
    exc = raised.value
    assert errors.status_code(exc) == 3
    assert errors.status_message(exc) == f"{tmp_path / name}: file name too long"
    assert errors.expected(exc)
    assert isinstance(errors.from_status(3, errors.status_message(exc)), errors.InvalidArgument)


def test_os_errors_speak_gos_words() -> None:
    import errno

    full = OSError(errno.ENOSPC, "No space left on device", "/var/lib/lamina/x")
    assert errors.status_code(full) == errors.CODE_UNKNOWN
    assert errors.status_message(full) == "/var/lib/lamina/x: no space left on device"
    assert errors.expected(full)
    assert errors.status_code(OSError(errno.EINVAL, "Invalid argument")) == 3
    assert errors.status_message(OSError(errno.EINVAL, "Invalid argument")) == "invalid argument"
    assert not errors.expected(OSError(errno.EIO, "Input/output error"))
    assert not errors.expected(KeyError("bug"))
    assert errors.expected(errors.NotFound("x")) and errors.expected(TimeoutError())
    assert errors.code_name(5) == "NotFound" and errors.code_name(2) == "Unknown"


def test_a_full_disk_says_so_in_gos_words_whichever_layer_hit_it() -> None:
    import errno

    import lmdb

    for exc in (OSError(errno.ENOSPC, "No space left on device"), lmdb.DiskError("mdb_txn_commit: ...")):
        assert errors.status_code(exc) == errors.CODE_UNKNOWN  # as containerd's errdefs.ToGRPC
        assert errors.status_message(exc) == "no space left on device"
    assert errors.expected(lmdb.DiskError("mdb_txn_commit: ..."))
