"""Small sharded datasets made in tests: WebDataset tars and Parquet image tables with faces."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from skimage import data as skdata


def face_photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A scene with the astronaut's face pasted at a seed-dependent place, or none for odd seeds."""
    rng = np.random.default_rng(seed)
    background = Image.fromarray(rng.integers(60, 200, (size[1], size[0], 3), dtype=np.uint8))
    if seed % 2 == 0:
        face = Image.fromarray(skdata.astronaut()).crop((150, 30, 300, 200)).resize((120, 136))
        background.paste(face, (int(rng.integers(0, size[0] - 120)), int(rng.integers(0, size[1] - 136))))
    return background


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    """Add a regular member with ``payload`` to an open tar."""
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def write_tar_shards(folder: Path, shards: int, per_shard: int, seed: int = 0,
                     size: tuple[int, int] = (320, 240)) -> list[Path]:
    """``shard-000000.tar``...: each sample a .jpg plus .cls and .json sidecars."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        path = folder / f"shard-{s:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(per_shard):
                key = f"sample{s:03d}{i:03d}"
                n = seed + s * per_shard + i
                add_member(tar, f"{key}.jpg", jpeg(face_photo(n, size)))
                add_member(tar, f"{key}.cls", str(n % 10).encode())
                add_member(tar, f"{key}.json", json.dumps({"label": n % 10, "caption": f"photo {n}"}).encode())
        paths.append(path)
    return paths


def parquet_table(rows: int, seed: int = 0, struct: bool = True) -> pa.Table:
    images = [jpeg(face_photo(seed + i)) for i in range(rows)]
    column = ([{"bytes": b, "path": f"img{seed + i}.jpg"} for i, b in enumerate(images)] if struct else images)
    return pa.table({"id": list(range(seed, seed + rows)), "image": column,
                     "label": [(seed + i) % 10 for i in range(rows)]})


def write_parquet_files(folder: Path, files: int, rows: int, struct: bool = True) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(files):
        path = folder / f"part-{f:05d}.parquet"
        pq.write_table(parquet_table(rows, seed=f * rows, struct=struct), path)
        paths.append(path)
    return paths
