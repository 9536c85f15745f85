"""The LMDB environment: schema version, migrations, prefix scans, growth when full."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lamina.core.metadata import db as dbmod


def test_schema_version_written_and_newer_refused(tmp_path: Path) -> None:
    d = dbmod.Database(str(tmp_path))
    assert d.view(lambda t: t.get("version")) == dbmod.SCHEMA_VERSION
    d.update_sync(lambda t: t.put("version", dbmod.SCHEMA_VERSION + 1))
    d.close()
    with pytest.raises(RuntimeError, match="newer than this lamina"):
        dbmod.Database(str(tmp_path))


def test_migration_hook_runs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = dbmod.Database(str(tmp_path))
    d.close()
    ran: list[int] = []
    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", dbmod.SCHEMA_VERSION + 1)
    monkeypatch.setitem(dbmod.MIGRATIONS, dbmod.SCHEMA_VERSION - 1, lambda t: ran.append(1))
    d = dbmod.Database(str(tmp_path))
    assert ran == [1] and d.view(lambda t: t.get("version")) == dbmod.SCHEMA_VERSION
    d.close()
    dbmod.Database(str(tmp_path)).close()
    assert ran == [1]


def test_scan_is_bounded_by_prefix(tmp_path: Path) -> None:
    d = dbmod.Database(str(tmp_path))
    d.update_sync(lambda t: [t.put(k, k) for k in ("v1/a/image/x", "v1/a/image/y/z", "v1/ab/image/q", "v1/a/imagex")])
    assert d.view(lambda t: list(t.scan("v1/a/image/"))) == [("x", "v1/a/image/x"), ("y/z", "v1/a/image/y/z")]
    assert d.update_sync(lambda t: t.delete_prefix("v1/a/")) == 3
    assert d.view(lambda t: list(t.keys("v1/"))) == ["ab/image/q"]
    d.close()


def test_map_grows_instead_of_failing(tmp_path: Path) -> None:
    d = dbmod.Database(str(tmp_path), map_size=1 << 16)

    async def fill() -> None:
        for i in range(200):
            await d.update(lambda t, i=i: t.put(f"k/{i:04}", "x" * 1000))

    asyncio.run(fill())
    assert len(d.view(lambda t: list(t.keys("k/")))) == 200
    d.close()
