"""The shared taxonomy: every mapped TotalSegmentator class exists, every label has an anatomy."""

from __future__ import annotations

from ctcorpus.taxonomy import (
    CT_RATE_LABELS,
    FALLBACK_TO_ANATOMY,
    LABEL_ANATOMY,
    TOTALSEGMENTATOR_TO_ANATOMY,
    Anatomy,
    anatomy_of_structure,
)


def test_mapped_totalsegmentator_classes_exist():
    from totalsegmentator.map_to_binary import class_map

    names = set(class_map["total"].values())
    assert set(TOTALSEGMENTATOR_TO_ANATOMY) <= names
    chest = {"trachea", "heart", "aorta", "esophagus", "thyroid_gland", "sternum", "lung_upper_lobe_left"}
    assert all(TOTALSEGMENTATOR_TO_ANATOMY[n] is not Anatomy.OTHER for n in chest)


def test_every_label_and_fallback_structure_has_a_region():
    assert len(CT_RATE_LABELS) == 18 and set(LABEL_ANATOMY) == set(CT_RATE_LABELS)
    assert anatomy_of_structure("lung_left") is Anatomy.LUNGS
    assert anatomy_of_structure("femur_left") is Anatomy.BONES
    assert anatomy_of_structure("no_such_structure") is Anatomy.OTHER
    assert set(FALLBACK_TO_ANATOMY) == {"body", "lung_left", "lung_right", "airways", "bones"}
