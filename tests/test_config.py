"""Config mistakes fail before any work, with a message naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import DirectOptions

from pipelines.cli import main
from pipelines.config import ConfigError, build_options, load_yaml

BASE = str(Path(__file__).resolve().parents[1] / "conf" / "base.yaml")


def _conf(tmp_path: Path, text: str) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return str(path)


ACCOUNTABILITY = ["purpose=testing the anonymizer", "legal_basis=legitimate_interests"]


def _required(tmp_path: Path) -> list[str]:
    return [f"input={tmp_path}", f"output={tmp_path}/out", *ACCOUNTABILITY]


def test_files_merge_left_to_right_and_set_wins(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "method: solid\njpeg_quality: 80\ndetector:\n  batch_size: 4\n")
    options, merged = build_options([BASE, conf], [*_required(tmp_path), "jpeg_quality=90"],
                                    ["--direct_num_workers=2"])
    assert options.method == "solid" and options.jpeg_quality == 90
    assert options.detector_batch_size == 4  # nested YAML sections flatten to section_key
    assert options.get_all_options()["direct_num_workers"] == 2  # Beam flags pass through
    assert merged["method"] == "solid"


@pytest.mark.parametrize(("text", "field"), [
    ("no_such_setting: 1\n", "no_such_setting"),
    ("jpeg_quality: high\n", "jpeg_quality"),
    ("jpeg_quality: 12.5\n", "jpeg_quality"),
    ("allow_low_security: maybe\n", "allow_low_security"),
    ("method: smudge\n", "method"),
    ("jpeg_quality: 20\n", "jpeg_quality"),
    ("box_margin: 0.05\n", "box_margin"),
    ("solid_color: '1,2'\n", "solid_color"),
    ("detector_thresholds: '0.6,0.7'\n", "detector_thresholds"),
    ("method: pixelate\n", "method"),
    ("synthetic_blend: alpha\n", "synthetic_blend"),
    ("identity_min_face_size: 10\n", "identity_min_face_size"),
    ("synthetic_match: grain\n", "synthetic_match"),
    ("centerface_rotations: 45\n", "centerface_rotations"),
    ("centerface_rotations: [90, true]\n", "centerface_rotations"),
    ("retinaface_scales: [1, fast]\n", "retinaface_scales"),
])
def test_bad_settings_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        build_options([BASE, _conf(tmp_path, text)], _required(tmp_path))


def test_replacement_threshold_above_the_verify_threshold_is_refused_where_verification_trusts_detection(
        tmp_path: Path) -> None:
    # Under verify_scope: regions an MTCNN face scored between the two thresholds would stay unreplaced
    # outside every searched window; with the whole output searched, verification would see it.
    with pytest.raises(ConfigError, match="detector_score_threshold"):
        build_options([BASE, _conf(tmp_path, "detector_score_threshold: 0.95\n")], _required(tmp_path))
    for text in ("detector_score_threshold: 0.95\nverify_scope: full\n",
                 "detector_score_threshold: 0.95\nverify_score_threshold: 0.95\n",
                 "detector_score_threshold: 0.95\ndetector: none\n"):
        options, _ = build_options([BASE, _conf(tmp_path, text)], _required(tmp_path))
        assert options.detector_score_threshold == 0.95


@pytest.mark.parametrize(("text", "rotations", "scales"), [
    ("centerface_rotations: 180\nretinaface_scales: 1\n", (180,), (1.0,)),
    ("centerface_rotations: [90, 270]\nretinaface_scales: [1, 0.5]\n", (90, 270), (1.0, 0.5)),
    ("centerface_rotations: '90,180'\nretinaface_scales: '2'\n", (90, 180), (2.0,)),
])
def test_comma_list_settings_take_a_number_or_a_yaml_list(tmp_path: Path, text: str, rotations: tuple[int, ...],
                                                          scales: tuple[float, ...]) -> None:
    """A comma-separated setting is also written as one bare number or as a YAML list of numbers."""
    from pipelines.settings import parse_settings

    options, _ = build_options([BASE, _conf(tmp_path, text)], _required(tmp_path))
    parsed = parse_settings(options)
    assert parsed.centerface_rotations == rotations and parsed.retinaface_scales == scales


def test_missing_input_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="input"):
        build_options([BASE], [f"output={tmp_path}/out", *ACCOUNTABILITY])


def test_unreadable_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(_conf(tmp_path, "a: [1, 2\n"))
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml(str(tmp_path / "absent.yaml"))


def test_cli_config_errors_exit_2_before_any_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    extra = [arg for pair in ACCOUNTABILITY for arg in ("--set", pair)]
    assert main(["run", "--conf", BASE, "--set", f"input={tmp_path}/nothing-here",
                 "--set", f"output={out}", *extra]) == 2
    assert "input" in capsys.readouterr().err
    assert main(["run", "--conf", BASE, "--set", f"input={tmp_path}", "--set", f"output={out}",
                 "--set", "bogus=1", *extra]) == 2
    assert "bogus" in capsys.readouterr().err
    assert not out.exists()


def test_misspelled_beam_flag_is_an_error_and_known_ones_pass(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    conf = _conf(tmp_path, f"input: {tmp_path}/in\noutput: {tmp_path}/out\npurpose: tests\nlegal_basis: consent\n")
    with pytest.raises(ConfigError, match="--direct_num_worker: unknown flag"):
        build_options([conf], [], ["--runner=DirectRunner", "--direct_num_worker=2"])
    options, _ = build_options([conf], [], ["--runner=DirectRunner", "--direct_num_workers=2",
                                            "--direct_running_mode", "multi_processing", "--experiments=a,b",
                                            "--flink_master=localhost:8081", "--no_use_public_ips"])
    assert options.view_as(DirectOptions).direct_num_workers == 2
    assert main(["run", "--conf", conf, "--runer=DirectRunner"]) == 2
    assert "--runer: unknown flag" in capsys.readouterr().err


def test_option_strings_are_parsed_once_into_the_stages_values(tmp_path: Path) -> None:
    """Validation, the detectors and the replacement policy ask for the parsed strings: one parse."""
    from pipelines.settings import identity_policy_for, parse_settings, replacement_policy_for

    options, _ = build_options([BASE], [*_required(tmp_path), "solid_color=1,2,3", "identity_threshold=0.7"])
    again, _ = build_options([BASE], [*_required(tmp_path), "solid_color=1,2,3", "identity_threshold=0.7"])
    assert parse_settings(options) is parse_settings(again)
    assert replacement_policy_for(options).solid_color == (1, 2, 3)
    identity = identity_policy_for(options)
    assert (identity.threshold, identity.min_face_size, identity.escalate) == (0.7, 40, True)
