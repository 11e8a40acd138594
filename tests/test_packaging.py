"""The wheel that remote workers install (``--extra_package``, the worker image) is complete.

It is built from a clean clone (only committed files), installed alone into a fresh venv whose
third-party packages come from the project venv through a .pth file (the same pinned stack,
without a 6 GB reinstall), and runs the job there from a folder outside the repo, with the
DirectRunner's worker processes importing pipelines/, transforms/ and expectations/ from the
wheel: a module missing from the wheel fails the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.datasets import write_tar_shards

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "transforms", "expectations", "sampledata")


def _check(command: list[str], **kwargs: object) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return str(done.stdout)


def test_wheel_from_a_clean_clone_runs_the_job_outside_the_repo(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    _check(["git", "clone", "--quiet", str(ROOT), str(clone)])
    _check([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
            "--wheel-dir", str(tmp_path / "dist"), str(clone)])
    wheels = list((tmp_path / "dist").glob("dataset_anonymizer-*.whl"))
    assert len(wheels) == 1
    members = set(zipfile.ZipFile(wheels[0]).namelist())
    for package in PACKAGES:  # every committed file of the packages, data included
        committed = {str(p.relative_to(clone)) for p in (clone / package).rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts}
        assert committed and committed <= members, committed - members
    assert not any(m.startswith(("tests/", "conf/", "benchmarks/")) for m in members)
    assert any(m.endswith("entry_points.txt") for m in members)

    fresh = tmp_path / "fresh"
    _check([sys.executable, "-m", "venv", "--without-pip", str(fresh)])
    python = str(fresh / "bin" / "python")
    site = _check([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    # Third-party packages only: a directory named in a .pth is not scanned for .pth files, so the
    # project venv's editable install (a .pth finder pointing at the source tree) stays inactive.
    Path(site, "pinned-stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _check([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, str(wheels[0])])

    elsewhere = tmp_path / "elsewhere"
    write_tar_shards(elsewhere / "in", shards=1, per_shard=2)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PATH=f"{fresh / 'bin'}{os.pathsep}{env.get('PATH', '')}", GX_ANALYTICS_ENABLED="false")
    found = _check([python, "-c", "import pipelines, transforms, expectations, transforms.detection as d; "
                    "print(pipelines.__file__, transforms.__file__, expectations.__file__, d.__file__, "
                    "'purpose' in __import__('pipelines.options').options.SPECS_BY_NAME)"],
                   cwd=elsewhere, env=env).split()
    assert all(path.startswith(site) for path in found[:4]), found
    output = elsewhere / "out"
    settings = [f"input={elsewhere / 'in' / '*.tar'}", f"output={output}", "identity_check=false"]
    if found[4] == "True":
        settings += ["purpose=packaging test", "legal_basis=legitimate_interests"]
    stdout = _check([python, "-m", "pipelines.cli", "run", "--conf", str(ROOT / "conf" / "base.yaml"),
                     *[a for s in settings for a in ("--set", s)],
                     "--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
                    cwd=elsewhere, env=env)
    assert "images_read 2" in stdout
    rows = pq.read_table(output / "manifest").to_pylist()
    assert sorted(r["status"] for r in rows) == ["published", "published"]
    with tarfile.open(output / "data" / "shard-000000.tar") as tar:
        assert len([m for m in tar.getmembers() if m.name.endswith(".jpg")]) == 2
