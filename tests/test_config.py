"""Tests of config loading: what a file may hold, and what is refused at load time."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctcorpus.config import config_from_dict, load_config
from ctcorpus.errors import ConfigError


def test_a_key_given_twice_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "ctcorpus.yaml"
    path.write_text("train:\n  steps: 5\noutputs:\n  dataset_version: v2\ntrain:\n  batch_size: 4\n")
    with pytest.raises(ConfigError, match=r"key 'train' is given twice") as info:
        load_config(path)
    assert info.value.path == str(path)
    path.write_text("train:\n  steps: 5\n  steps: 7\n")
    with pytest.raises(ConfigError, match=r"key 'steps' is given twice"):
        load_config(path)
    path.write_text("train:\n  <<: {steps: 3, batch_size: 4}\n  steps: 9\n")  # a merge may be overridden
    assert (load_config(path).train.steps, load_config(path).train.batch_size) == (9, 4)


def test_a_config_file_that_cannot_be_read_is_refused_naming_file_and_reason(tmp_path: Path) -> None:
    """A folder or a file in another encoding is a ConfigError (the CLI prints it as one line, exit 2),
    not an OSError or UnicodeDecodeError traceback that names neither."""
    with pytest.raises(ConfigError, match=r"config file cannot be read: Is a directory") as info:
        load_config(tmp_path)
    assert info.value.path == str(tmp_path)
    path = tmp_path / "ctcorpus.yaml"
    path.write_bytes("reports:\n  columns:\n    text: Befund_Prim\u00e4r\n".encode("cp1252"))
    with pytest.raises(ConfigError, match=r"config file is not UTF-8 text: byte 41 \(invalid continuation byte\)") as info:
        load_config(path)
    assert info.value.path == str(path)


def test_text_heads_that_do_not_divide_embed_dim_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"train: .*text_heads \(3\) must divide embed_dim \(256\)"):
        config_from_dict({"train": {"text_heads": 3}})


@pytest.mark.parametrize("sections", [["finding", "impression"], []])
def test_label_sections_must_be_section_names(sections: list[str]) -> None:
    # a name the sectioner never gives ("finding") silently left every report without labels
    with pytest.raises(ConfigError, match=r"reports\.label_sections"):
        config_from_dict({"reports": {"label_sections": sections}})
    assert config_from_dict({"reports": {"label_sections": ["impression"]}}).reports.label_sections == ("impression",)


def test_extra_anatomy_terms_must_name_an_anatomy() -> None:
    # "lung" (the value is "lungs") was accepted and the reports stage stopped with a bare ValueError
    with pytest.raises(ConfigError, match=r"reports\.extra_anatomy_terms: .*\['lung'\] are not anatomy values"):
        config_from_dict({"reports": {"extra_anatomy_terms": {"lung": ["lunge"]}}})
    terms = config_from_dict({"reports": {"extra_anatomy_terms": {"lungs": ["lunge"]}}}).reports.extra_anatomy_terms
    assert terms == {"lungs": ("lunge",)}


@pytest.mark.parametrize("shape", [[0, 0, 0], [128, -1, 128]])
def test_crop_pad_shape_must_be_positive(shape: list[int]) -> None:
    # (0, 0, 0) made every resampled volume empty; a negative size failed at the first resample
    with pytest.raises(ConfigError, match=r"ingest: .*crop_pad_shape must be positive"):
        config_from_dict({"ingest": {"crop_pad_shape": shape}})


@pytest.mark.parametrize("limit", ["lots", "4 gigs", "Auto", "1,5GB", "1.5", "-1"])
def test_a_memory_limit_dask_cannot_read_is_refused(limit: str) -> None:
    # Dask refused these only when the cluster started, naming no field; it read '1.5' as 1 byte
    with pytest.raises(ConfigError, match=r"run\.memory_limit_per_worker: .*is no memory limit"):
        config_from_dict({"run": {"memory_limit_per_worker": limit}})


@pytest.mark.parametrize("limit", ["auto", "4GiB", "2.5 GiB", "100MB", "4g", "0.5", "4000000000", "0"])
def test_memory_limits_dask_reads_are_accepted(limit: str) -> None:
    assert config_from_dict({"run": {"memory_limit_per_worker": limit}}).run.memory_limit_per_worker == limit


@pytest.mark.parametrize(("written", "limit"), [("0.5", "0.5"), ("8000000000", "8000000000"), ("0", "0"), ("4.0e+9", "4000000000.0")])
def test_a_memory_limit_written_as_a_number_is_the_limit_it_names(tmp_path: Path, written: str, limit: str) -> None:
    """Unquoted, YAML reads a fraction or a byte count as a number: it was refused as 'Input should be a valid
    string', where the field's description offers '0.5' of the machine or a whole number of bytes."""
    path = tmp_path / "ctcorpus.yaml"
    path.write_text(f"run:\n  memory_limit_per_worker: {written}\n")
    assert load_config(path).run.memory_limit_per_worker == limit


@pytest.mark.parametrize("written", ["1.5", "-1", ".inf", "true"])
def test_a_number_dask_cannot_read_as_a_memory_limit_is_refused_naming_the_field(tmp_path: Path, written: str) -> None:
    path = tmp_path / "ctcorpus.yaml"
    path.write_text(f"run:\n  memory_limit_per_worker: {written}\n")
    with pytest.raises(ConfigError, match=r"run\.memory_limit_per_worker: .*(is no memory limit|valid string)"):
        load_config(path)


@pytest.mark.parametrize("version", ["", ".", "..", "../v2", "v1/v2", ".tmp-v2"])
def test_dataset_version_must_be_a_plain_folder_name(version: str) -> None:
    # '' and '.' made the build replace <output_dir>/dataset whole, deleting every other version
    with pytest.raises(ConfigError, match=r"outputs\.dataset_version: .*plain folder name"):
        config_from_dict({"outputs": {"dataset_version": version}})
    assert config_from_dict({"outputs": {"dataset_version": "v2.1-ct_chest"}}).outputs.dataset_version == "v2.1-ct_chest"


def test_one_report_export_or_exclude_pattern_may_be_given_without_a_list() -> None:
    """`report_files: /ris/reports.csv`, as one export is naturally written, was refused as no tuple."""
    run = config_from_dict({"run": {"report_files": "ris/reports.csv", "exclude_globs": "labels/*"}}).run
    assert run.report_files == (Path("ris/reports.csv"),)
    assert run.exclude_globs == ("labels/*",)
    with pytest.raises(ConfigError, match=r"run\.report_files: Input should be a valid tuple"):
        config_from_dict({"run": {"report_files": 5}})


def test_a_section_or_list_whose_entries_are_all_commented_out_keeps_its_default(tmp_path: Path) -> None:
    """YAML reads a key with nothing under it as null: `train:` with its fields commented out, as a user trims
    what `ctcorpus config` prints, was refused as 'Input should be a valid dictionary or instance of
    TrainConfig', and `report_files:` with its entries commented out as 'Input should be a valid tuple'."""
    path = tmp_path / "ctcorpus.yaml"
    path.write_text("run:\n  report_files:\n  #  - /ris/reports.csv\n  exclude_globs:\n"
                    "reports:\n  columns:\n  #  text: Befundtext\ntrain:\n#  steps: 5\n")
    loaded = load_config(path)
    assert loaded.run.report_files == () and loaded.run.exclude_globs == ()
    assert loaded.reports.columns == type(loaded.reports.columns)() and loaded.train == type(loaded.train)()
    with pytest.raises(ConfigError, match=r"train: Input should be a valid dictionary"):
        config_from_dict({"train": [5]})


def test_an_hu_clip_that_leaves_the_segmenter_no_air_is_refused() -> None:
    """Volumes are segmented as stored: clipped at -200 HU, the fallback read the whole field of view as body."""
    with pytest.raises(ConfigError, match=r"invalid configuration: Value error, ingest\.hu_clip starts at -200 HU, not below -500 HU"):
        config_from_dict({"ingest": {"hu_clip": [-200, 300]}})
    assert config_from_dict({"ingest": {"hu_clip": [-600, 1000]}}).ingest.hu_clip == (-600, 1000)
    with pytest.raises(ConfigError, match=r"not below -700 HU"):  # the segmenter's own thresholds decide
        config_from_dict({"ingest": {"hu_clip": [-600, 1000]}, "anatomy": {"body_hu": -700}})
    assert config_from_dict({"ingest": {"hu_clip": [-1024, 3071]}}).ingest.hu_clip == (-1024, 3071)
