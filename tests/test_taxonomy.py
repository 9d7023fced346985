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

    assert set(TOTALSEGMENTATOR_TO_ANATOMY) <= {name for task in class_map.values() for name in task.values()}
    chest = {"trachea", "heart", "aorta", "esophagus", "thyroid_gland", "sternum", "lung_upper_lobe_left"}
    assert all(TOTALSEGMENTATOR_TO_ANATOMY[n] is not Anatomy.OTHER for n in chest)
    # every class of the chest tasks a site may run instead of (or beside) "total" has its region
    for task in ("heartchambers_highres", "lung_vessels", "pleural_pericard_effusion", "coronary_arteries", "lung_nodules"):
        assert [n for n in class_map[task].values() if anatomy_of_structure(n) is Anatomy.OTHER] == [], task


def test_every_label_and_fallback_structure_has_a_region():
    assert len(CT_RATE_LABELS) == 18 and set(LABEL_ANATOMY) == set(CT_RATE_LABELS)
    assert anatomy_of_structure("lung_left") is Anatomy.LUNGS
    assert anatomy_of_structure("femur_left") is Anatomy.BONES
    assert anatomy_of_structure("no_such_structure") is Anatomy.OTHER
    assert set(FALLBACK_TO_ANATOMY) == {"body", "lung_left", "lung_right", "airways", "bones"}
