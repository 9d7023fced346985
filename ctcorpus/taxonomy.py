"""The one anatomy taxonomy and label vocabulary, shared by reports, anatomy, snippets and audit.

Report sentences are assigned to :class:`Anatomy` regions (lexicons live in
``ctcorpus.reports``); segmentation masks are mapped to the same regions through
:data:`TOTALSEGMENTATOR_TO_ANATOMY` and :data:`FALLBACK_TO_ANATOMY`, so "left lower lobe" in a
sentence and the lung masks of a volume meet in one place.
"""

from __future__ import annotations

from enum import Enum
from types import MappingProxyType
from typing import Mapping


class Anatomy(str, Enum):
    """Coarse chest-CT regions used across peers (fVLM, CT-RATE)."""

    LUNGS = "lungs"
    AIRWAYS = "airways"
    PLEURA = "pleura"
    MEDIASTINUM = "mediastinum"  # mediastinum and lymph nodes
    HEART = "heart"  # heart and pericardium
    AORTA = "aorta"  # aorta and great vessels
    ESOPHAGUS = "esophagus"
    THYROID = "thyroid"
    CHEST_WALL = "chest_wall"  # chest wall and breast
    BONES = "bones"  # bones and spine
    ABDOMEN = "abdomen"  # upper abdomen organs
    OTHER = "other"


#: The 18 CT-RATE abnormality labels (RadBERT classifier vocabulary), in CT-RATE's order.
CT_RATE_LABELS: tuple[str, ...] = (
    "medical_material",
    "arterial_wall_calcification",
    "cardiomegaly",
    "pericardial_effusion",
    "coronary_artery_wall_calcification",
    "hiatal_hernia",
    "lymphadenopathy",
    "emphysema",
    "atelectasis",
    "lung_nodule",
    "lung_opacity",
    "pulmonary_fibrotic_sequela",
    "pleural_effusion",
    "mosaic_attenuation_pattern",
    "peribronchial_thickening",
    "consolidation",
    "bronchiectasis",
    "interlobular_septal_thickening",
)

#: The anatomy each label is about (used to place label evidence when a sentence names no anatomy).
LABEL_ANATOMY: Mapping[str, Anatomy] = MappingProxyType(
    {
        "medical_material": Anatomy.OTHER,
        "arterial_wall_calcification": Anatomy.AORTA,
        "cardiomegaly": Anatomy.HEART,
        "pericardial_effusion": Anatomy.HEART,
        "coronary_artery_wall_calcification": Anatomy.HEART,
        "hiatal_hernia": Anatomy.ESOPHAGUS,
        "lymphadenopathy": Anatomy.MEDIASTINUM,
        "emphysema": Anatomy.LUNGS,
        "atelectasis": Anatomy.LUNGS,
        "lung_nodule": Anatomy.LUNGS,
        "lung_opacity": Anatomy.LUNGS,
        "pulmonary_fibrotic_sequela": Anatomy.LUNGS,
        "pleural_effusion": Anatomy.PLEURA,
        "mosaic_attenuation_pattern": Anatomy.LUNGS,
        "peribronchial_thickening": Anatomy.AIRWAYS,
        "consolidation": Anatomy.LUNGS,
        "bronchiectasis": Anatomy.AIRWAYS,
        "interlobular_septal_thickening": Anatomy.LUNGS,
    }
)


def _total_segmentator_map() -> dict[str, Anatomy]:
    """TotalSegmentator class (of ``total``, and the chest classes of other tasks) -> region; classes
    not listed map to ``OTHER``: a sentence about one is never localized by its mask."""
    mapping: dict[str, Anatomy] = {}
    for lobe in ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
                 "lung_lower_lobe_right"):
        mapping[lobe] = Anatomy.LUNGS
    for side in ("left", "right"):
        for i in range(1, 13):
            mapping[f"rib_{side}_{i}"] = Anatomy.BONES
        for bone in ("humerus", "scapula", "clavicula", "femur", "hip"):
            mapping[f"{bone}_{side}"] = Anatomy.BONES
        mapping[f"kidney_{side}"] = Anatomy.ABDOMEN
        mapping[f"adrenal_gland_{side}"] = Anatomy.ABDOMEN
        mapping[f"subclavian_artery_{side}"] = Anatomy.AORTA
        mapping[f"common_carotid_artery_{side}"] = Anatomy.AORTA
        mapping[f"brachiocephalic_vein_{side}"] = Anatomy.AORTA
        mapping[f"autochthon_{side}"] = Anatomy.CHEST_WALL
        mapping[f"kidney_cyst_{side}"] = Anatomy.ABDOMEN
        mapping[f"iliac_artery_{side}"] = Anatomy.AORTA
        mapping[f"iliac_vena_{side}"] = Anatomy.AORTA
    for level in [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [
        f"L{i}" for i in range(1, 6)
    ] + ["S1"]:
        mapping[f"vertebrae_{level}"] = Anatomy.BONES
    mapping.update(
        {
            "sternum": Anatomy.BONES,
            "costal_cartilages": Anatomy.BONES,
            "sacrum": Anatomy.BONES,
            "skull": Anatomy.BONES,
            "spinal_cord": Anatomy.BONES,  # lies in the spinal canal: localizes with the spine
            "trachea": Anatomy.AIRWAYS,
            "esophagus": Anatomy.ESOPHAGUS,
            "thyroid_gland": Anatomy.THYROID,
            "heart": Anatomy.HEART,
            "atrial_appendage_left": Anatomy.HEART,
            "aorta": Anatomy.AORTA,
            "pulmonary_vein": Anatomy.AORTA,
            "brachiocephalic_trunk": Anatomy.AORTA,
            "superior_vena_cava": Anatomy.AORTA,
            "inferior_vena_cava": Anatomy.AORTA,
            "portal_vein_and_splenic_vein": Anatomy.ABDOMEN,
            "liver": Anatomy.ABDOMEN,
            "spleen": Anatomy.ABDOMEN,
            "gallbladder": Anatomy.ABDOMEN,
            "stomach": Anatomy.ABDOMEN,
            "pancreas": Anatomy.ABDOMEN,
            "duodenum": Anatomy.ABDOMEN,
            "small_bowel": Anatomy.ABDOMEN,
            "colon": Anatomy.ABDOMEN,
        }
    )
    # chest classes of the other tasks a site may run (anatomy.task): total_v1 and heartchambers_highres,
    # lung_vessels, pleural_pericard_effusion, trunk_cavities, coronary_arteries, lung_nodules
    mapping.update(
        {
            **dict.fromkeys(("heart_myocardium", "heart_atrium_left", "heart_atrium_right", "heart_ventricle_left",
                             "heart_ventricle_right", "pericardium", "pericardial_effusion", "coronary_arteries"),
                            Anatomy.HEART),
            "pulmonary_artery": Anatomy.AORTA,
            "lung_airways": Anatomy.AIRWAYS,
            "lung_airways_wall": Anatomy.AIRWAYS,
            **dict.fromkeys(("lung", "lung_nodules", "lung_arteries", "lung_veins"), Anatomy.LUNGS),
            "pleural_effusion": Anatomy.PLEURA,
            "lung_pleural": Anatomy.PLEURA,
            "mediastinum": Anatomy.MEDIASTINUM,
            "abdominal_cavity": Anatomy.ABDOMEN,
        }
    )
    return mapping


#: TotalSegmentator class name -> anatomy region (unlisted classes: ``Anatomy.OTHER``).
TOTALSEGMENTATOR_TO_ANATOMY: Mapping[str, Anatomy] = MappingProxyType(_total_segmentator_map())

#: Fallback (threshold) segmenter label name -> anatomy region.
FALLBACK_TO_ANATOMY: Mapping[str, Anatomy] = MappingProxyType(
    {
        "body": Anatomy.OTHER,
        "lung_left": Anatomy.LUNGS,
        "lung_right": Anatomy.LUNGS,
        "airways": Anatomy.AIRWAYS,
        "bones": Anatomy.BONES,
    }
)


def anatomy_of_structure(structure: str) -> Anatomy:
    """Map a mask structure name (TotalSegmentator or fallback) to its anatomy region.

    >>> anatomy_of_structure("lung_lower_lobe_left")
    <Anatomy.LUNGS: 'lungs'>
    """
    if structure in FALLBACK_TO_ANATOMY:
        return FALLBACK_TO_ANATOMY[structure]
    return TOTALSEGMENTATOR_TO_ANATOMY.get(structure, Anatomy.OTHER)
