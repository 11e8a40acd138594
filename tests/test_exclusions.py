"""transforms/exclusions.py and the exclusions of a job's options (pipelines/settings.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.config import build_options
from pipelines.options import AnonymizeOptions
from pipelines.settings import exclusions_for
from tests.helpers import ACCOUNTABILITY, BASE_CONF
from tests.unit_data import jpeg_bytes, record
from transforms.exclusions import Exclusions, read_identifier_file, read_subject, source_matches, split_identifiers
from transforms.storage import DEFAULT_STORAGE


def _options(tmp_path: Path, *sets: str) -> AnonymizeOptions:
    accountability = [f"{k}={v}" for k, v in ACCOUNTABILITY.items()]
    options, _ = build_options([BASE_CONF], [f"input={tmp_path}/in", f"output={tmp_path}/out", "identity_check=false",
                                             *accountability, *sets])
    return options


def test_split_and_read_identifiers(tmp_path: Path) -> None:
    assert split_identifiers(" a, b\n\nc ,") == ["a", "b", "c"]
    listed = tmp_path / "ids.txt"
    listed.write_text("# objections\nperson-1\n\n  person-2  \n# done\n", encoding="utf-8")
    assert read_identifier_file(str(listed)) == ["person-1", "person-2"]
    with pytest.raises(FileNotFoundError):
        read_identifier_file(str(tmp_path / "missing.txt"))


def test_read_subject_from_a_sidecar_a_column_or_json() -> None:
    extras = (("sid", b" p-7 \n"), ("json", b'{"person": {"id": "p-9"}, "list": [1]}'), ("column", 42))
    assert read_subject(extras, "sid") == "p-7"
    assert read_subject(extras, "column") == "42"
    assert read_subject(extras, "json:person.id") == "p-9"
    assert read_subject((("json", {"person": {"id": "p-3"}}),), "json:person.id") == "p-3"  # a Parquet struct
    for field in ("json:person.missing", "json:list", "json:person", "absent", ""):
        assert read_subject(extras, field) == "", field
    assert read_subject((("json", b"not json"),), "json:id") == ""


def test_source_matches_a_record_or_its_container() -> None:
    listed = frozenset({"s3://b/shard-1.tar", "/in/a.jpg"})
    assert source_matches("/in/a.jpg", listed) == "/in/a.jpg"
    assert source_matches("s3://b/shard-1.tar#k1", listed) == "s3://b/shard-1.tar"
    assert source_matches("s3://b/shard-2.tar#k1", listed) == ""
    assert source_matches("/in/a.jpg.bak", listed) == ""


def test_apply_excludes_listed_records_with_no_bytes_or_sidecars() -> None:
    exclusions = Exclusions(frozenset({"/in/a.jpg"}), frozenset({"p-2"}), "sid")
    by_source = exclusions.apply(record("s", 0, "a.jpg", jpeg_bytes(10)))
    assert by_source.is_excluded and by_source.reason == "exclusion:source" and by_source.data == b""
    subject = record("s", 1, "b.jpg", jpeg_bytes(20)).replace(extras=(("sid", b"p-2"),))
    by_subject = exclusions.apply(subject)
    assert by_subject.is_excluded and by_subject.reason == "exclusion:subject"
    assert by_subject.extras == () and by_subject.source_sha256 == ""
    kept = exclusions.apply(record("s", 2, "c.jpg", jpeg_bytes(30)).replace(extras=(("sid", b"p-3"),)))
    assert not kept.is_excluded and kept.subject_id == "p-3" and kept.data
    assert exclusions.summary() == {"source_uris": 1, "subject_ids": 1, "subject_field": "sid"}
    with pytest.raises(ValueError, match="exclude_subject_ids: needs subject_field"):
        Exclusions(subject_ids=frozenset({"p-1"}))


def test_exclusions_of_options_read_their_files(tmp_path: Path) -> None:
    sources = tmp_path / "sources.txt"
    sources.write_text("/in/b.jpg\n", encoding="utf-8")
    options = _options(tmp_path, "exclude_source_uris=/in/a.jpg", f"exclude_source_uris_file={sources}",
                       "exclude_subject_ids=p-1", "subject_field=json:id")
    exclusions = exclusions_for(options, DEFAULT_STORAGE)
    assert exclusions.source_uris == {"/in/a.jpg", "/in/b.jpg"}
    assert exclusions.subject_ids == {"p-1"} and exclusions.subject_field == "json:id"
    missing = _options(tmp_path, f"exclude_subject_ids_file={tmp_path / 'none.txt'}", "subject_field=sid")
    with pytest.raises(FileNotFoundError, match="exclude_subject_ids_file: file not found"):
        exclusions_for(missing, DEFAULT_STORAGE)
    assert json.dumps(exclusions.summary())  # the record of processing holds counts only
