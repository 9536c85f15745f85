"""The shim's command line, parsed as Go's ``flag`` package parses it.

containerd builds it in runtime/v2/shim/util.go ``Command``; every action
module takes the result, and the zygote's spare fills one in from laminad's
request instead, so the flags are their own module.
"""

from __future__ import annotations

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
