"""``containerd-shim-lamina-v2``: the runtime v2 shim protocol of containerd 1.6.

containerd runs the binary in the bundle directory with Go-style flags
``-namespace NS -address ADDR -publish-binary BIN -id ID [-debug] [-bundle B]``
and ``TTRPC_ADDRESS`` in the environment (runtime/v2/shim/util.go
``Command``), then an action (runtime/v2/shim/shim.go ``run``):

``start``
    Listen on ``unix:///run/containerd/s/<sha256(address/namespace/group)>``
    (runc/manager ``Start``; the group is the id unless a group annotation
    names another), or reuse the shim already serving that socket; write the
    ``address`` file; start the long-lived shim with the socket as fd 3; print
    the address.  containerd reads stdout *and* stderr to EOF
    (``CombinedOutput``), so the long-lived shim drops both at once.  Where the
    Go shim re-executes itself, this one forks: the interpreter is already up,
    and a second start-up would double the latency of ``ctr run``.
``delete``
    Clean up after a dead shim: ``runtime delete --force``, unmount the
    rootfs, print a DeleteResponse (exit status 137, now) on stdout.
(none)
    Serve ``containerd.task.v2.Task`` on fd 3 (or ``-socket``), log to the
    bundle's ``log`` FIFO, forward events to ``$TTRPC_ADDRESS``.

This module imports only the standard library; the task service and
protobuf load in the forked shim, off the ``start`` path.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import sys

from lamina.core.fsutil import atomic_write

SOCKET_DIR = "/run/containerd/s"
GROUP_LABELS = ("io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id")
RUNC_ROOT = "/run/containerd/runc"
MAX_FD = 65536
USAGE = ("usage: containerd-shim-lamina-v2 -namespace NS -id ID -address ADDR "
         "[-publish-binary BIN] [-bundle DIR] [-socket PATH] [-debug] [start|delete]")


class Flags:
    """The parsed command line (a plain class: ``dataclasses`` costs an import
    of ``inspect`` on the path of every ``start``)."""

    def __init__(self) -> None:
        self.namespace = ""
        self.id = ""
        self.address = ""
        self.publish_binary = "containerd"
        self.bundle = ""
        self.socket = ""
        self.debug = False
        self.version = False
        self.action = ""


def parse_flags(argv: list[str]) -> Flags:
    """Go's ``flag`` syntax: ``-name value``, ``-name=value``, ``--name``;
    parsing stops at the first argument that is not a flag (the action)."""
    flags = Flags()
    strings = {"namespace", "id", "address", "publish-binary", "bundle", "socket"}
    bools = {"debug", "v"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.lstrip("-").partition("=")
        if name in bools:
            on = value.lower() not in ("false", "0", "f") if eq else True
            setattr(flags, "version" if name == "v" else name, on)
        elif name in strings:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise SystemExit(f"flag needs an argument: -{name}\n{USAGE}")
                value = argv[i]
            setattr(flags, name.replace("-", "_"), value)
        else:
            raise SystemExit(f"flag provided but not defined: -{name}\n{USAGE}")
        i += 1
    if i < len(argv):
        flags.action = argv[i]
    return flags


def socket_address(containerd_address: str, namespace: str, group: str) -> str:
    """runtime/v2/shim/util_unix.go ``SocketAddress``."""
    key = os.path.normpath(os.path.join(containerd_address, namespace, group))
    return f"unix://{SOCKET_DIR}/{hashlib.sha256(key.encode()).hexdigest()}"


def _grouping(id: str) -> str:
    with open("config.json", "rb") as f:
        annotations = json.load(f).get("annotations") or {}
    for label in GROUP_LABELS:
        if label in annotations:
            return str(annotations[label])
    return id


def _listen(path: str) -> socket.socket:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return sock


def _can_connect(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.1)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


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


def listen(flags: Flags) -> tuple[str, socket.socket | None]:
    """``start``'s socket, in the bundle (cwd): the address, and the listening
    socket for a new shim, or None when a live shim of the same group already
    serves the address (then the ``address`` file names it).

    The socket listens before anyone learns the address, so the daemon's
    connect never waits on the shim's own start-up.
    """
    address = socket_address(flags.address, flags.namespace, _grouping(flags.id))
    path = address.removeprefix("unix://")
    try:
        sock = _listen(path)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        if _can_connect(path):  # grouping: that shim serves this container too
            atomic_write(os.path.abspath("address"), address.encode(), sync=False)
            return address, None
        os.unlink(path)
        sock = _listen(path)
    try:
        # No fsync: the address names a socket of this boot's shim, in the
        # state dir; a power loss takes both away.
        atomic_write(os.path.abspath("address"), address.encode(), sync=False)
    except BaseException:
        sock.close()
        os.unlink(path)
        raise
    return address, sock


def start(flags: Flags, options: bytes = b"") -> tuple[str, int]:
    """The ``start`` action, in the bundle (cwd): the serving shim's address
    and pid (0 when a shim of the same group already serves the socket).

    The serving shim is this process's forked child, orphaned when ``start``
    exits.  ``options`` is what containerd writes on stdin: the runtime
    options ``Any``.  (laminad's zygote does the same steps in a pre-forked
    shim instead: ``shim/spare.py``.)
    """
    address, sock = listen(flags)
    if sock is None:
        return address, 0
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _become_shim(flags, sock)
        sock.close()
        settle(pid, options, os.getppid())
    except BaseException:
        sock.close()
        os.unlink(address.removeprefix("unix://"))
        raise
    return address, pid


def _become_shim(flags: Flags, sock: socket.socket) -> None:
    """In the forked child: detach from containerd and serve; never return.

    Every descriptor but the socket (fd 3) and stdio is closed: the parent's
    pipes to containerd, or the zygote's sockets to laminad, must not be held
    open by a process that outlives them.
    """
    code = 1
    try:
        os.setsid()
        if sock.fileno() != 3:
            os.dup2(sock.fileno(), 3)
            sock.close()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        os.closerange(4, MAX_FD)
        code = serve(flags)
    finally:
        os._exit(code)


def _open_log() -> None:
    """Point fd 2 at the bundle's ``log`` FIFO (non-blocking), or /dev/null."""
    try:
        fd = os.open("log", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    os.dup2(fd, 2)
    os.close(fd)
    os.set_blocking(2, False)


def start_logging(flags: Flags) -> None:
    """A serving shim's logging: fd 2 on the bundle's ``log`` FIFO (cwd), the
    flags' fields on every line, and the ttrpc package logging through it."""
    _open_log()
    # The shim never speaks TLS; asyncio imports ssl only if it can (its
    # "except ImportError: ssl = None"), and libssl costs ~1.4 MiB PSS per shim.
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    from lamina.core.ttrpc.log import set_logger
    from lamina.shim import log as shimlog

    shimlog.configure(debug=flags.debug, id=flags.id, namespace=flags.namespace, pid=os.getpid())
    set_logger(shimlog.get_logger())


def serve(flags: Flags) -> int:
    start_logging(flags)
    from lamina.shim.serve import run

    return run(flags.namespace, listen_path=flags.socket)


def _run_quietly(argv: list[str]) -> tuple[int, bytes]:
    """Run a command with stdio on /dev/null except stderr, which is returned."""
    read, write = os.pipe()
    null = os.open(os.devnull, os.O_RDWR)
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, write, 2)])
    finally:
        os.close(write)
        os.close(null)
    with os.fdopen(read, "rb") as f:
        err = f.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), err


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def delete_response(pid: int, exit_status: int, exited_at_ns: int) -> bytes:
    """``containerd.task.v2.DeleteResponse`` {pid=1, exit_status=2, exited_at=3},
    encoded by hand: loading protobuf would double the cost of ``delete``, which
    containerd waits for after every task (``cleanupAfterDeadShim``)."""
    seconds, nanos = divmod(exited_at_ns, 10**9)
    ts = b"\x08" + _encode_varint(seconds) + (b"\x10" + _encode_varint(nanos) if nanos else b"")
    out = b""
    if pid:
        out += b"\x08" + _encode_varint(pid)
    if exit_status:
        out += b"\x10" + _encode_varint(exit_status)
    return out + b"\x1a" + _encode_varint(len(ts)) + ts


def delete(flags: Flags) -> int:
    """runc/manager ``Stop``: the shim is gone; remove what it left."""
    import time

    from lamina.shim import log as shimlog

    shimlog.configure(debug=flags.debug, id=flags.id, namespace=flags.namespace)
    log = shimlog.log
    bundle = flags.bundle or os.path.join(os.path.dirname(os.getcwd()), flags.id)
    try:
        with open(os.path.join(bundle, "runtime")) as f:
            binary = f.read().strip()
    except OSError:
        binary = ""
    root = RUNC_ROOT
    try:
        with open(os.path.join(bundle, "options.json"), "rb") as f:
            root = json.load(f).get("root") or RUNC_ROOT
    except (OSError, ValueError):
        pass
    argv = [binary or "runc", "--root", os.path.join(root, flags.namespace),
            "--log", os.path.join(bundle, "log.json"), "--log-format", "json", "delete", "--force", flags.id]
    code, err = _run_quietly(argv)
    if code != 0:
        log.warning("failed to remove runc container", error=err.decode(errors="replace").strip())
    rootfs = os.path.join(bundle, "rootfs")
    if os.path.ismount(rootfs):
        from lamina.core.mount_ops import unmount_all

        try:
            unmount_all(rootfs)
        except OSError as exc:
            log.warning("failed to cleanup rootfs mount", error=str(exc))
    pid = 0
    try:
        with open(os.path.join(bundle, "init.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError) as exc:
        log.warning("failed to read init pid file", error=str(exc))
    sys.stdout.buffer.write(delete_response(pid, 128 + 9, time.time_ns()))
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    flags = parse_flags(sys.argv[1:] if argv is None else argv)
    if flags.version:
        from lamina import __version__

        print(f"{sys.argv[0]}:\n  Version:  {__version__}\n  Runtime:  io.containerd.lamina.v2\n")
        return 0
    if not flags.namespace:
        sys.stderr.write("io.containerd.lamina.v2: shim namespace cannot be empty")
        return 1
    if flags.bundle and flags.action != "delete":
        os.chdir(flags.bundle)
    if flags.action == "start":
        options = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
        sys.stdout.write(start(flags, options)[0])
        return 0
    if flags.action == "delete":
        return delete(flags)
    if flags.action:
        sys.stderr.write(f"io.containerd.lamina.v2: unknown action {flags.action!r}\n{USAGE}\n")
        return 1
    return serve(flags)


if __name__ == "__main__":
    sys.exit(main())
