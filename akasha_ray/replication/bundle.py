"""Export and import of one system: a versioned bundle of change rows, applied by `Applier`.

A bundle is a tar file (`.tar`) or a folder holding Parquet parts of change rows
(`changes.SCHEMA`) and `manifest.json` `{format: 1, kind, system_id, at, parts, counts}`: the
system's memories (every tier, vectors and entity links included), its tombstones, metric
points, and its graph with the shared entities and relationships it may reach. API keys are the
deployment's and are not exported.

On import, a memory already held as sent is a no-op and a deleted one stays deleted;
`on_conflict` says what happens to one held with other content: "fail" (the default) refuses
the import before anything is written, "skip" keeps what is held. With DR on, an import into
the primary is logged like any write, so the secondaries get it.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from akasha_ray.config import Settings
from akasha_ray.errors import Conflict, InvalidInput
from akasha_ray.identity import split_key
from akasha_ray.replication import changes
from akasha_ray.replication.apply import Applier, OnConflict
from akasha_ray.replication.bucket import Bucket
from akasha_ray.replication.snapshot import MANIFEST, PartWriter, dump, new_id

FORMAT = 1
KIND = "akasha-export"


async def export(settings: Settings, system_id: str, out: Path) -> dict[str, Any]:
    """Write system `system_id`'s bundle to `out` (a `.tar` file, else a folder)."""
    out = Path(out)
    if out.exists() and (out.is_file() or any(out.iterdir())):
        raise InvalidInput(f"{out} exists: name a new file or an empty folder", field="out")
    with tempfile.TemporaryDirectory(prefix="akasha-export-") as scratch:
        folder = out if out.suffix != ".tar" else Path(scratch)
        writer = PartWriter(Bucket(str(folder)), "")
        await dump(settings, writer, system_id)
        writer.flush()
        at = datetime.now(UTC)
        manifest = {
            "format": FORMAT,
            "kind": KIND,
            "id": new_id(at),
            "system_id": system_id,
            "at": at.isoformat(),
            "parts": writer.parts,
            "counts": writer.counts,
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if out.suffix == ".tar":
            with tarfile.open(out, "w") as tar:
                for name in [MANIFEST, *manifest["parts"]]:
                    tar.add(folder / name, arcname=name)
    return manifest


async def import_bundle(
    settings: Settings, path: Path, on_conflict: OnConflict = "fail"
) -> dict[str, Any]:
    """Apply a bundle here; what was imported and skipped."""
    manifest, parts = read(Path(path))
    applier = Applier(settings, on_conflict=on_conflict, log_changes=settings.dr.enabled)
    if on_conflict == "fail":  # refuse before anything is written
        clashing = []
        for part in parts():
            for batch in _memories(part):
                clashing += await applier.clashes(batch)
        if clashing:
            shown = ", ".join(split_key(k)[1] for k in clashing[:5])
            raise Conflict(
                f"{len(clashing)} memories of the bundle are held here with other content "
                f"(ids: {shown}); nothing was imported (--on-conflict skip keeps what is held)",
                field="on_conflict",
            )
    counts: dict[str, int] = {}
    skipped = 0
    for part in parts():
        # Tokens name the bundle: importing it again adds no metric points (for a day).
        done = await applier.apply_rows(part, tokens=f"import:{manifest['id']}")
        skipped += done.skipped_conflicts
        for kind, n in done.counts.items():
            counts[kind] = counts.get(kind, 0) + n
    return {
        "system_id": manifest["system_id"],
        "imported": counts,
        "skipped_conflicts": skipped,
    }


def read(path: Path) -> tuple[dict[str, Any], Any]:
    """The bundle's manifest, and a function yielding its parts' change rows in order."""
    if not path.exists():
        raise InvalidInput(f"no bundle at {path}", field="file")
    if path.is_dir():
        manifest = _manifest((path / MANIFEST).read_bytes() if (path / MANIFEST).exists() else None)

        def parts() -> Iterator[pa.Table]:
            for name in manifest["parts"]:
                yield _table((path / _member(name)).read_bytes())

        return manifest, parts
    if not tarfile.is_tarfile(path):
        raise InvalidInput(f"{path} is neither a bundle folder nor a tar file", field="file")
    with tarfile.open(path) as tar:
        manifest = _manifest(_extract(tar, MANIFEST))

    def tar_parts() -> Iterator[pa.Table]:
        with tarfile.open(path) as tar:
            for name in manifest["parts"]:
                yield _table(_extract(tar, _member(name)))

    return manifest, tar_parts


def _manifest(data: bytes | None) -> dict[str, Any]:
    if data is None:
        raise InvalidInput("the bundle has no manifest.json", field="file")
    manifest = json.loads(data)
    if manifest.get("kind") != KIND or manifest.get("format") != FORMAT:
        raise InvalidInput(
            f"not an Akasha export of format {FORMAT} (kind {manifest.get('kind')!r}, "
            f"format {manifest.get('format')!r})",
            field="file",
        )
    return manifest


def _member(name: str) -> str:
    """A part's name as the manifest gives it: a plain file name, never a path out."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise InvalidInput(f"the bundle names a part {name!r} outside itself", field="file")
    return name


def _extract(tar: tarfile.TarFile, name: str) -> bytes | None:
    try:
        member = tar.getmember(name)
    except KeyError:
        return None
    if not member.isfile():
        raise InvalidInput(f"{name} in the bundle is not a plain file", field="file")
    handle = tar.extractfile(member)
    return None if handle is None else handle.read()


def _table(data: bytes | None) -> pa.Table:
    if data is None:
        raise InvalidInput("the bundle lacks a part its manifest names", field="file")
    return pq.read_table(io.BytesIO(data)).cast(changes.SCHEMA)


def _memories(part: pa.Table) -> Iterator[pa.Table]:
    for kind, payload in zip(part["kind"].to_pylist(), part["payload"].to_pylist(), strict=True):
        if kind == "memories":
            yield changes.decode(kind, payload)
