"""Regenerate lamina's protobuf modules from the ``.proto`` files beside this script.

Run ``python -m lamina.api.generate`` (or ``python api/generate.py``) after editing a
``.proto``; ``--check`` regenerates into a scratch directory and fails, naming the files,
when the committed ``*_pb2*`` files differ, are missing, or are stale leftovers.

The protos import each other as ``lamina/api/<dir>/<file>.proto``, which is what makes
protoc emit ``from lamina.api.types import mount_pb2``. The ``api/`` directory installs as
``lamina.api`` (setup.cfg ``package_dir``) but is not laid out that way on disk, so the
``.proto`` files are copied into a temporary ``lamina/api/`` tree and protoc only ever
writes into scratch space; results are then copied back. Only ``services/`` gets gRPC
stubs: ``runtime/`` and ``ttrpc.proto`` are spoken over ttrpc by the shim, which must
never import grpcio, and ``types/``/``events/`` declare no services.

This module imports nothing from lamina, so it runs from a bare checkout.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

API_DIR = Path(__file__).resolve().parent
IMPORT_PREFIX = Path("lamina", "api")
GRPC_DIRS = frozenset({"services"})
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_sources(api_dir: Path = API_DIR) -> list[Path]:
    """The ``.proto`` files under ``api_dir``, relative to it, in a stable order."""
    return sorted(p.relative_to(api_dir) for p in api_dir.rglob("*.proto"))


def generated_files(api_dir: Path = API_DIR) -> set[Path]:
    """The generated files currently present under ``api_dir``, relative to it."""
    return {
        p.relative_to(api_dir)
        for p in api_dir.rglob("*")
        if p.is_file()
        and p.name.endswith(GENERATED_SUFFIXES)
        and "__pycache__" not in p.parts
    }


def _protoc(args: list[str]) -> None:
    from grpc_tools import protoc

    include = str(resources.files("grpc_tools") / "_proto")
    code = protoc.main(["grpc_tools.protoc", f"-I{include}", *args])
    if code != 0:
        raise SystemExit(f"protoc failed (exit {code}) for: {' '.join(args)}")


def generate_into(out_dir: Path, api_dir: Path = API_DIR) -> set[Path]:
    """Generate every module into ``out_dir`` (mirroring ``api/``) and return their paths."""
    sources = proto_sources(api_dir)
    if not sources:
        raise SystemExit(f"no .proto files under {api_dir}")
    with tempfile.TemporaryDirectory(prefix="lamina-protoc-") as tmp:
        src_root, gen_root = Path(tmp, "src"), Path(tmp, "gen")
        for rel in sources:
            dest = src_root / IMPORT_PREFIX / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(api_dir / rel, dest)
        gen_root.mkdir()
        names = [str(IMPORT_PREFIX / rel) for rel in sources]
        grpc_names = [
            str(IMPORT_PREFIX / rel) for rel in sources if rel.parts[0] in GRPC_DIRS
        ]
        # protoc resolves file names against -I, so run from the source root.
        cwd = os.getcwd()
        os.chdir(src_root)
        try:
            _protoc(
                ["-I.", f"--python_out={gen_root}", f"--pyi_out={gen_root}", *names]
            )
            _protoc(["-I.", f"--grpc_python_out={gen_root}", *grpc_names])
        finally:
            os.chdir(cwd)
        produced = generated_files(gen_root / IMPORT_PREFIX)
        for rel in produced:
            dest = out_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(gen_root / IMPORT_PREFIX / rel, dest)
    return produced


def differences(api_dir: Path = API_DIR) -> list[str]:
    """Regenerate in scratch space; describe every committed file that is out of date."""
    with tempfile.TemporaryDirectory(prefix="lamina-protoc-check-") as tmp:
        fresh = generate_into(Path(tmp), api_dir)
        committed = generated_files(api_dir)
        problems = [f"missing: {rel}" for rel in sorted(fresh - committed)]
        problems += [f"extra: {rel}" for rel in sorted(committed - fresh)]
        problems += [
            f"differs: {rel}"
            for rel in sorted(fresh & committed)
            if not filecmp.cmp(Path(tmp, rel), api_dir / rel, shallow=False)
        ]
    return problems


def write(api_dir: Path = API_DIR) -> list[str]:
    """Bring the committed generated files up to date; return what changed."""
    changed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lamina-protoc-out-") as tmp:
        fresh = generate_into(Path(tmp), api_dir)
        for rel in sorted(generated_files(api_dir) - fresh):
            (api_dir / rel).unlink()
            changed.append(f"removed: {rel}")
        for rel in sorted(fresh):
            dest = api_dir / rel
            if dest.exists() and filecmp.cmp(Path(tmp, rel), dest, shallow=False):
                continue
            staged = dest.with_name(dest.name + ".tmp")
            shutil.copyfile(Path(tmp, rel), staged)
            os.replace(staged, dest)
            changed.append(f"wrote: {rel}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lamina.api.generate", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1, listing the files, if the committed generated files are out of date",
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = differences()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(
                "generated files are out of date: run python -m lamina.api.generate",
                file=sys.stderr,
            )
            return 1
        return 0
    for line in write():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
