"""The OCI bundle a shim runs a task from, as containerd's runtime/v2/bundle.go.

Layout, under the runtime plugin's state dir (``<state>/io.containerd.runtime.v2.task``)::

    <ns>/<id>/config.json        the container's spec, byte for byte
    <ns>/<id>/rootfs/            the shim mounts the Create request's rootfs here
    <ns>/<id>/work -> <root>/<ns>/<id>   persistent work dir (kept under root)
    <ns>/<id>/log                FIFO the shim writes its log to (made by the daemon)
    <ns>/<id>/address            the shim's ttrpc address (written by the shim)
    <ns>/<id>/shim-binary-path   the shim binary, so recovery finds it again

Deletion unmounts ``rootfs`` first and then removes the directory by renaming
it to ``.<id>`` and removing that, so a crash half way never leaves a bundle
that recovery would mistake for a live task.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from typing import Any

from lamina.core.errors import AlreadyExists, InvalidArgument
from lamina.core.fsutil import atomic_write
from lamina.core.identifiers import validate_identifier
from lamina.core.mount_ops import unmount_all

CONFIG_FILENAME = "config.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    id: str
    namespace: str
    path: str

    @property
    def rootfs(self) -> str:
        return os.path.join(self.path, "rootfs")

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def read(self, name: str) -> str | None:
        try:
            with open(self.file(name)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: str) -> None:
        # The bundle lives under the state dir, which does not outlive a boot;
        # containerd writes these files without fsync too.
        atomic_write(self.file(name), data.encode(), sync=False)

    def delete(self) -> None:
        work = None
        with contextlib.suppress(OSError):
            work = os.readlink(self.file("work"))
        unmount_all(self.rootfs)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(self.rootfs)
        _atomic_delete(self.path)
        if work is not None:
            _atomic_delete(work)


def _atomic_delete(path: str) -> None:
    hidden = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}")
    try:
        os.rename(path, hidden)
    except FileNotFoundError:
        return
    shutil.rmtree(hidden, ignore_errors=True)


def parse_spec(spec: bytes) -> dict[str, Any]:
    """The spec as JSON; anything else is refused before a shim is started."""
    try:
        doc = json.loads(spec)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"container spec is not valid OCI runtime-spec JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("container spec is not valid OCI runtime-spec JSON: not an object")
    return doc


def load_bundle(state: str, namespace: str, id_: str) -> Bundle:
    return Bundle(id=id_, namespace=namespace, path=os.path.join(state, namespace, id_))


def new_bundle(root: str, state: str, namespace: str, id_: str, spec: bytes) -> Bundle:
    """Create the bundle dir for a new task; on failure nothing is left behind."""
    try:
        validate_identifier(id_)
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid task id {id_}: {exc.context}") from None
    bundle = load_bundle(state, namespace, id_)
    work = os.path.join(root, namespace, id_)
    os.makedirs(os.path.dirname(bundle.path), mode=0o711, exist_ok=True)
    try:
        os.mkdir(bundle.path, 0o700)
    except FileExistsError:
        raise AlreadyExists(f"bundle {bundle.path}") from None
    try:
        _set_remapped_group(bundle.path, parse_spec(spec))
        os.mkdir(bundle.rootfs, 0o711)
        os.makedirs(os.path.dirname(work), mode=0o711, exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        os.mkdir(work, 0o711)
        os.symlink(work, bundle.file("work"))
        with open(bundle.file(CONFIG_FILENAME), "wb") as f:
            f.write(spec)
    except BaseException:
        shutil.rmtree(bundle.path, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        raise
    return bundle


def _set_remapped_group(path: str, spec: dict[str, Any]) -> None:
    """With a user namespace, the container's root group may enter the bundle
    (containerd's prepareBundleDirectoryPermissions)."""
    linux = spec.get("linux") or {}
    for mapping in linux.get("gidMappings") or ():
        if mapping.get("containerID") == 0 and mapping.get("hostID"):
            os.chown(path, -1, int(mapping["hostID"]))
            os.chmod(path, 0o710)
            return
