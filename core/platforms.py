"""The host's OCI platform, spelled as containerd's ``platforms`` package does."""

from __future__ import annotations

import platform
from dataclasses import dataclass

_ARCHES = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host() -> Platform:
    machine = platform.machine()
    arch = _ARCHES.get(machine, machine)
    variant = {"arm64": "v8", "arm": "v7"}.get(arch, "")
    return Platform(os="linux", architecture=arch, variant=variant)
