"""Where ``start`` puts the serving shim: the cgroup and the oom score.

runc/manager ``Start`` moves the shim into the runtime options'
``shim_cgroup`` and makes it one point more killable than containerd.  Both
the exec'ed ``start`` (``shim/start.py``) and the zygote's spare
(``shim/spare.py``) do this, so it stands apart from either.  The options
arrive as protobuf bytes; they are read here field by field, because loading
protobuf would cost every ``start`` more than all the rest of it.
"""

from __future__ import annotations

import os


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _proto_strings(data: bytes) -> dict[int, bytes]:
    """The length-delimited fields of a protobuf message (last one wins);
    enough to read an Any and ``Options.shim_cgroup`` without loading protobuf."""
    fields: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            size, i = _varint(data, i)
            fields[key >> 3] = data[i:i + size]
            i += size
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return fields


def _shim_cgroup(stdin_data: bytes) -> str:
    if not stdin_data:
        return ""
    any_fields = _proto_strings(stdin_data)
    if any_fields.get(1, b"").decode().rsplit("/", 1)[-1] != "containerd.runc.v1.Options":
        return ""
    return _proto_strings(any_fields.get(2, b"")).get(3, b"").decode()


def _join_cgroup(pid: int, path: str) -> None:
    """runc/manager ``Start``: move the shim into ``Options.shim_cgroup``."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        targets = [f"/sys/fs/cgroup{path}/cgroup.procs"]
    else:
        targets = [f"/sys/fs/cgroup/{c}{path}/cgroup.procs" for c in os.listdir("/sys/fs/cgroup")
                   if os.path.isdir(f"/sys/fs/cgroup/{c}{path}")]
    for target in targets:
        with open(target, "w") as f:
            f.write(str(pid))


def _adjust_oom_score(pid: int, parent: int) -> None:
    """One point more killable than containerd (shim/util_unix.go): ``parent``
    is the process that ran ``start`` for it."""
    with open(f"/proc/{parent}/oom_score_adj") as f:
        score = int(f.read().strip())
    with open(f"/proc/{pid}/oom_score_adj", "w") as f:
        f.write(str(min(score + 1, 1000)))


def settle(pid: int, options: bytes, parent: int) -> None:
    """What ``start`` does to the serving shim ``pid`` before it answers:
    the runtime options' ``shim_cgroup`` and the oom score."""
    cgroup = _shim_cgroup(options)
    if cgroup:
        _join_cgroup(pid, cgroup)
    _adjust_oom_score(pid, parent)
