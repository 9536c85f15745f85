"""laminad's TOML config: defaults, unknown keys named, plugin tables, round trip."""

from __future__ import annotations

import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lamina.core import config
from lamina.core.errors import InvalidArgument
from lamina.core.registry import Registration, Registry
from lamina.plugins.restart import RestartConfig, lamina_register_plugins


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
    unknown = config.from_table(config.DaemonConfig, {"plugins": {"io.nope.v1.y": {"any": {"deep": 1}}}})
    assert config.plugin_configs(unknown, [_REG]) == {"io.containerd.snapshotter.v1.x": _SnapConfig()}
    assert config.ignored_parts(unknown, [_REG]) == [config.Ignored(key='plugins."io.nope.v1.y"',
                                                                    reason="no such plugin")]


def test_containerd_keys_are_set_aside_and_typos_stay_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('version = 2\noom_score = -999\nplugin_dir = ""\n[cgroup]\npath = "/x"\n'
                    '[debug]\naddress = "/run/d.sock"\nlevel = "debug"\n'
                    '[timeouts]\n"io.containerd.timeout.shim.cleanup" = "5s"\n'
                    '[proxy_plugins.p]\ntype = "snapshot"\n')
    loaded = config.load(str(path))
    assert loaded.cgroup.path == "/x" and loaded.debug.level == "debug"
    assert [part.key for part in loaded.ignored] == ["oom_score", "plugin_dir", "debug.address", "timeouts"]
    assert loaded.proxy_plugins == {"p": config.ProxyPluginConfig(type="snapshot")}
    path.write_text('version = 2\n[debug]\nadress = "/run/d.sock"\n')
    with pytest.raises(InvalidArgument, match="unknown config key 'debug.adress'"):
        config.load(str(path))


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
    path.write_text('version = 2\n[plugins."io.containerd.metadata.v1.lmdb"]\nmap_sise = 1\n')
    result = subprocess.run(["laminad", "--config", str(path), "config", "dump"], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "laminad: unknown config key 'plugins.\"io.containerd.metadata.v1.lmdb\".map_sise': invalid argument")


def test_laminad_config_dump_lists_ignored_parts_and_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('version = 2\noom_score = 0\n[plugins."io.containerd.grpc.v1.cri-like"]\nx = 1\n')
    dump = subprocess.run(["laminad", "--root", str(tmp_path), "--config", str(path), "config", "dump"],
                          capture_output=True, text=True, check=True).stdout
    assert dump.splitlines()[:2] == [
        "# ignored: oom_score (not a laminad setting)",
        '# ignored: plugins."io.containerd.grpc.v1.cri-like" (no such plugin)',
    ]
    parsed = tomllib.loads(dump)
    assert "oom_score" not in parsed and "io.containerd.grpc.v1.cri-like" not in parsed["plugins"]


def test_proxy_plugins_register_as_their_type() -> None:
    from lamina.plugins.proxy import registrations

    cfg = config.from_table(config.DaemonConfig, {"proxy_plugins": {
        "nat": {"type": "snapshot", "address": "/run/nat.sock"},
        "blobs": {"type": "io.containerd.content.v1", "address": "/run/blobs.sock"}}})
    assert [r.uri for r in registrations(cfg.proxy_plugins)] == ["io.containerd.snapshotter.v1.nat",
                                                                  "io.containerd.content.v1.blobs"]
    with pytest.raises(InvalidArgument, match="proxy_plugins.x.type 'snapshots'"):
        registrations({"x": config.ProxyPluginConfig(type="snapshots", address="/a")})
    with pytest.raises(InvalidArgument, match="proxy_plugins.x.address is required"):
        registrations({"x": config.ProxyPluginConfig(type="snapshot")})
    with pytest.raises(InvalidArgument, match="unknown config key 'proxy_plugins.x.adress'"):
        config.from_table(config.DaemonConfig, {"proxy_plugins": {"x": {"adress": "/a"}}})


def test_restart_monitor_table_is_its_plugins() -> None:
    """containerd's ``[plugins."io.containerd.internal.v1.restart"]`` is no longer ignored; a typo in it is refused."""
    registry = Registry()
    lamina_register_plugins(registry)
    uri = "io.containerd.internal.v1.restart"
    cfg = config.from_table(config.DaemonConfig, {"plugins": {uri: {"interval": "1s"}}})
    assert config.plugin_configs(cfg, registry.registrations())[uri] == RestartConfig(interval="1s")
    assert config.ignored_parts(cfg, registry.registrations()) == []
    typo = config.from_table(config.DaemonConfig, {"plugins": {uri: {"intervall": "1s"}}})
    with pytest.raises(InvalidArgument, match=f'plugins."{uri}".intervall'):
        config.plugin_configs(typo, registry.registrations())
