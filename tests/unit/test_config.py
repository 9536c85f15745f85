"""laminad's TOML config: defaults, unknown keys named, plugin tables, round trip."""

from __future__ import annotations

import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lamina.core import config
from lamina.core.errors import InvalidArgument
from lamina.core.registry import Registration


@dataclass(kw_only=True)
class _SnapConfig:
    root_path: str = ""
    sync: bool = True
    runtimes: dict[str, str] = field(default_factory=dict)


_REG = Registration(type="io.containerd.snapshotter.v1", id="x", config=_SnapConfig, init=lambda ic: None)


def test_unknown_top_level_and_nested_keys_are_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('version = 2\n[grpc]\nadress = "/x"\n')
    with pytest.raises(InvalidArgument, match="unknown config key 'grpc.adress'"):
        config.load(str(path))


def test_wrong_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('version = 2\n[grpc]\nuid = "root"\n')
    with pytest.raises(InvalidArgument, match="'grpc.uid' must be of type int"):
        config.load(str(path))


def test_plugin_tables_fill_dataclasses_and_refuse_unknown_keys() -> None:
    cfg = config.from_table(config.DaemonConfig, {
        "plugins": {"io.containerd.snapshotter.v1.x": {"root_path": "/r", "runtimes": {"a": "b"}}},
    })
    built = config.plugin_configs(cfg, [_REG])
    assert built["io.containerd.snapshotter.v1.x"] == _SnapConfig(root_path="/r", runtimes={"a": "b"})
    bad = config.from_table(config.DaemonConfig, {"plugins": {"io.containerd.snapshotter.v1.x": {"roots": 1}}})
    with pytest.raises(InvalidArgument, match="plugins.\"io.containerd.snapshotter.v1.x\".roots"):
        config.plugin_configs(bad, [_REG])
    unknown = config.from_table(config.DaemonConfig, {"plugins": {"io.nope.v1.y": {}}})
    with pytest.raises(InvalidArgument, match="io.nope.v1.y"):
        config.plugin_configs(unknown, [_REG])


def test_to_toml_round_trips() -> None:
    cfg = config.DaemonConfig(root="/r \"quoted\"", disabled_plugins=["a.b"])
    text = config.to_toml(cfg, {"io.containerd.snapshotter.v1.x": _SnapConfig(runtimes={"k.v": "z"})})
    again = config.from_table(config.DaemonConfig, tomllib.loads(text))
    assert again.root == cfg.root and again.disabled_plugins == ["a.b"]
    assert config.plugin_configs(again, [_REG])["io.containerd.snapshotter.v1.x"].runtimes == {"k.v": "z"}


def test_laminad_config_default_and_dump(tmp_path: Path) -> None:
    default = subprocess.run(["laminad", "config", "default"], capture_output=True, text=True, check=True).stdout
    parsed = tomllib.loads(default)
    assert parsed["root"] == "/var/lib/lamina" and parsed["grpc"]["address"] == "/run/lamina/lamina.sock"
    assert "io.containerd.metadata.v1.lmdb" in parsed["plugins"]
    dump = subprocess.run(["laminad", "--root", str(tmp_path), "config", "dump"],
                          capture_output=True, text=True, check=True).stdout
    assert tomllib.loads(dump)["root"] == str(tmp_path)


def test_laminad_refuses_to_start_on_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('version = 2\nroot_dir = "/x"\n')
    result = subprocess.run(["laminad", "--config", str(path), "config", "dump"], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == "laminad: unknown config key 'root_dir': invalid argument"
