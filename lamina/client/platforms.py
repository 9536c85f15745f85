"""Platform specifiers and matchers, as containerd's ``platforms`` package reads and compares them.

``--platform`` takes ``os/arch[/variant]`` or just ``arch`` (the host's OS);
architectures are normalised (``x86_64`` → ``amd64``, ``aarch64`` → ``arm64``,
``armhf`` → ``arm/v7``).  :func:`only` is ``platforms.Only``: the same OS and
architecture, where ``arm64`` with no variant is ``v8`` and an ARM variant
also runs older variants (v7 runs v6 and v5).  :func:`best` orders candidates
the way ``images.LimitManifests`` keeps the best one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lamina.core.errors import InvalidArgument
from lamina.core.platforms import Platform, host

Matcher = Callable[[Platform], bool]

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""), "x86-64": ("amd64", ""), "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"), "armel": ("arm", "v6"), "i386": ("386", ""), "i686": ("386", ""),
}
_ARM_VARIANTS = ("v8", "v7", "v6", "v5")


def normalize(platform: Platform) -> Platform:
    arch, variant = platform.architecture.lower(), platform.variant.lower()
    if arch in _ARCH_ALIASES:
        arch, implied = _ARCH_ALIASES[arch]
        variant = variant or implied
    if arch == "arm64" and variant in ("", "8", "v8"):
        variant = "v8"
    elif arch == "arm" and variant in ("", "7"):
        variant = "v7"
    elif arch == "arm" and variant in ("5", "6", "8"):
        variant = f"v{variant}"
    return Platform(os=platform.os.lower(), architecture=arch, variant=variant)


def parse(spec: str) -> Platform:
    """``linux/arm64/v8``, ``linux/amd64`` or ``arm64``; errors name the specifier."""
    parts = spec.strip().split("/")
    if not all(parts) or len(parts) > 3:
        raise InvalidArgument(f"platform {spec!r}: expected os/arch[/variant]")
    if len(parts) == 1:
        if parts[0].lower() in ("linux", "windows", "darwin", "freebsd"):
            return normalize(Platform(os=parts[0], architecture=host().architecture, variant=host().variant))
        return normalize(Platform(os=host().os, architecture=parts[0]))
    return normalize(Platform(os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else ""))


def from_json(doc: dict[str, str]) -> Platform:
    """A platform as an OCI index or image config spells it."""
    return normalize(Platform(os=doc.get("os", ""), architecture=doc.get("architecture", ""),
                              variant=doc.get("variant", "")))


def _compatible(want: Platform) -> list[Platform]:
    """What a machine of ``want`` runs, best first."""
    want = normalize(want)
    if want.architecture == "arm" and want.variant in _ARM_VARIANTS:
        return [Platform(os=want.os, architecture="arm", variant=v)
                for v in _ARM_VARIANTS[_ARM_VARIANTS.index(want.variant):]]
    return [want]


def only(want: Platform) -> Matcher:
    ok = _compatible(want)
    return lambda candidate: normalize(candidate) in ok


def any_of(wanted: Sequence[Platform]) -> Matcher:
    matchers = [only(p) for p in wanted]
    return lambda candidate: any(m(candidate) for m in matchers)


def everything(_: Platform) -> bool:
    return True


def rank(wanted: Sequence[Platform], candidate: Platform) -> int:
    """How good ``candidate`` is for ``wanted`` (lower is better; a large number when it does not match)."""
    order = [p for w in wanted for p in _compatible(w)]
    normalized = normalize(candidate)
    return order.index(normalized) if normalized in order else len(order)


def default() -> Platform:
    return normalize(host())
