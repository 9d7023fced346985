"""Tests of snippet mining: the reference grammar, resolution through slice tables, placement, the table."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ctcorpus.config import SnippetsConfig, config_from_dict
from ctcorpus.config.ingest import IngestConfig
from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import ConfigError, SnippetError
from ctcorpus.ingest import Stack, index_export, plan_stacks
from ctcorpus.schemas import check_table, load_schema
from ctcorpus.snippets import (
    PRODUCER,
    ReferenceForm,
    SentenceContext,
    SeriesSlices,
    SnippetPair,
    VolumeGrid,
    mine_image_references,
    mine_snippets,
    resolve_references,
    slice_position,
    snippets_table,
    split_sentences,
    stack_slices,
)
from ctcorpus.synth.dicom import SeriesHeader, SlicePlacement, uid, write_series
from ctcorpus.synth.report_text import render_report
from ctcorpus.synth.truth import FindingTruth, SeriesTruth
from ctcorpus.taxonomy import LABEL_ANATOMY

DRAGON = Path(__file__).resolve().parents[2] / "shared" / "data" / "reports_dragon_samples_nl_en"
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

# --------------------------------------------------------------------------------------------
# Table-driven grammar test: (text, language, [(series, images), ...])
# --------------------------------------------------------------------------------------------
POSITIVES: list[tuple[str, str | None, list[tuple[int | None, tuple[int, ...]]]]] = [
    ("Nodule in the right upper lobe (series 3, image 45).", "en", [(3, (45,))]),
    ("Nodule series 3 image 45 unchanged.", "en", [(3, (45,))]),
    ("Nodule (se 3 im 45).", "en", [(3, (45,))]),
    ("Nodule (se3/im45).", "en", [(3, (45,))]),
    ("Nodule (3:45).", "en", [(3, (45,))]),
    ("Nodule (3:4).", "en", [(3, (4,))]),
    ("Nodule (3/45).", "en", [(3, (45,))]),
    ("Nodule on image 45 of series 3.", "en", [(3, (45,))]),
    ("Nodule (img 45, ser 3).", "en", [(3, (45,))]),
    ("Nodule (series 10001, image 45).", "en", [(10001, (45,))]),
    # an image out of a total before its series: the reference was lost
    ("Nodule (image 87/300, series 4).", "en", [(4, (87,))]),
    ("Herd (Bild 87/300 der Serie 4).", "de", [(4, (87,))]),
    ("Nodule on image 45 of series 20002.", "en", [(20002, (45,))]),
    # "at"/"auf" before the series: the image was placed in the primary series
    ("Nodule (image 12 at series 601).", "en", [(601, (12,))]),
    ("Herd (Bild 12 auf Serie 601).", "de", [(601, (12,))]),
    ("Herd auf Bild 12 auf der Serie 601.", None, [(601, (12,))]),
    ("Consolidation on images 40-44.", "en", [(None, (40, 41, 42, 43, 44))]),
    ("Two nodules on images 12 and 45 of series 3.", "en", [(3, (12, 45))]),
    ("Nodules in series 3, images 12, 18, 45.", "en", [(3, (12, 18, 45))]),
    ("Small nodule (image 45).", "en", [(None, (45,))]),
    ("Nodule (Se. 3/Im. 45).", "en", [(3, (45,))]),
    ("Nodule (Se/Im 3/45).", "en", [(3, (45,))]),
    # a stated series the grammar missed left a bare image, placed in the primary series (a wrong slice)
    ("Nodule (image 45 series 3).", "en", [(3, (45,))]),
    ("Nodules (image 45 series 3, image 60 series 4).", "en", [(3, (45,)), (4, (60,))]),
    ("Nodules series 3 image 45, and images 60-61 series 4.", "en", [(3, (45,)), (4, (60, 61))]),
    ("Nodules (images 45-47; series 3).", "en", [(3, (45, 46, 47))]),
    ("Nodule (Series: 3, Image: 45).", "en", [(3, (45,))]),
    ("Nodule (Se: 3 Im: 45).", "en", [(3, (45,))]),
    ("Herd (Serie: 3, Bild 45).", "de", [(3, (45,))]),
    ("Herd (Ser. 3, Bild 45).", "de", [(3, (45,))]),
    ("Nodus (ser. 3, beeld 45).", "nl", [(3, (45,))]),
    ("Nodule (series 3, image 1,045).", "en", [(3, (1045,))]),
    ("Nodules (images 1,045 and 1,046 of 1,200, series 3).", "en", [(3, (1045, 1046))]),
    ("Herd (Serie 3, Bild 1.045).", "de", [(3, (1045,))]),
    ("Herd (Serie 3, Schicht 45).", "de", [(3, (45,))]),
    ("Nodule (series 3, slices 45-46).", "en", [(3, (45, 46))]),
    ("Nodus (serie 3, snede 45).", "nl", [(3, (45,))]),
    # the second image of a list or range was lost, or left bare (placed in the primary series)
    ("Nodule (series 3, image 45 through image 47).", "en", [(3, (45, 46, 47))]),
    ("Herd (Serie 3, Bild 45 bis Bild 47).", "de", [(3, (45, 46, 47))]),
    ("Herde (Serie 3, Bilder 45 u. 47).", "de", [(3, (45, 47))]),
    ("Nodules (series 3, images 45 + 47).", "en", [(3, (45, 47))]),
    ("Nodule (image 45 of 120, series 3).", "en", [(3, (45,))]),
    ("Nodule (series 2 of 5, image 45).", "en", [(2, (45,))]),
    ("Herd (Bild 45 von 120, Serie 3).", "de", [(3, (45,))]),
    ("Nodule (se/im: 4/112-114).", "en", [(4, (112, 113, 114))]),
    # an alternative ('or', 'bzw.', Dutch 'of'), a repeated 'Im' and an unspaced 'Se3Im45' lost images
    ("Nodules (series 3, images 45 or 47).", "en", [(3, (45, 47))]),
    ("Nodules (images 45 and/or 47 of series 3).", "en", [(3, (45, 47))]),
    ("Herde (Serie 3, Bilder 45 bzw. 47).", "de", [(3, (45, 47))]),
    ("Herde (Serie 3, Bild 45 sowie 47).", "de", [(3, (45, 47))]),
    ("Noduli (serie 3, beelden 45 of 47).", "nl", [(3, (45, 47))]),
    ("Noduli (serie 3, beelden 45 of 47).", None, [(3, (45,))]),  # English 'of': image 45 of 47
    ("Nodules (Se 4 Im 60 and Im 61).", "en", [(4, (60, 61))]),
    ("Nodules (Se 4 Im 60, Im 61).", "en", [(4, (60, 61))]),
    ("Herd Serie 3 Bild 45 und im 6. Segment.", None, [(3, (45,))]),
    ("Nodule (Se3Im45).", "en", [(3, (45,))]),
    ("Nodule (SER3IMG45).", "en", [(3, (45,))]),
    # image 45 of 120 as a PACS overlay shows it; the start of an open end ('ff.', 'et seq.') is all that is known
    ("Nodule (Se: 3 Im: 45/120).", "en", [(3, (45,))]),
    ("Nodule (series 3, image 45/120).", "en", [(3, (45,))]),
    ("Herd (Serie 3, Bild 45 ff.).", "de", [(3, (45,))]),
    ("Nodules (series 3, images 45 et seq.).", "en", [(3, (45,))]),
    ("Herd (Serie/Bild 3/45).", "de", [(3, (45,))]),
    ("Nodule (series 3, images 40 to 42).", "en", [(3, (40, 41, 42))]),
    ("Nodule (Series 5, Image 456). Radiologically benign.", "en", [(5, (456,))]),
    ("Nodule image 45 in series 3; second one image 50 of series 3.", "en", [(3, (45,)), (3, (50,))]),
    ("Nodule (series #3, image 45).", "en", [(3, (45,))]),
    ("Nodule (Series #3, Image #45), and on image no. 50.", "en", [(3, (45,)), (None, (50,))]),
    ("Rundherd (Serie 3, Bild-Nr. 45).", "de", [(3, (45,))]),
    ("Nodules (series 3, image 45 and 2 more).", "en", [(3, (45,))]),
    ("Herde (Serie 3, Bild 45 und 2 weitere).", "de", [(3, (45,))]),
    ("Mass (se 4, im 120-122), unchanged.", "en", [(4, (120, 121, 122))]),
    ("Herd im rechten Oberlappen (Serie 3, Bild 45).", "de", [(3, (45,))]),
    ("Herd (Se. 3/Bild 45).", "de", [(3, (45,))]),
    ("Herd auf Bild 45 der Serie 3.", "de", [(3, (45,))]),
    ("Konsolidierung (Serie 3 Bilder 40-44).", "de", [(3, (40, 41, 42, 43, 44))]),
    ("Rundherd in Serie 4 Bild 87.", "de", [(4, (87,))]),
    ("Rundherd (Bild 45).", "de", [(None, (45,))]),
    ("Herde (Serie 2, Bilder 10 und 14).", "de", [(2, (10, 14))]),
    ("Nodule unchanged compared to the prior CT (series 3, image 45).", "en", [(3, (45,))]),
    ("Nodule (se 3 im 45; prior se 2 im 40).", "en", [(3, (45,))]),
    ("Größenprogredient zur Voruntersuchung (Serie 3, Bild 45).", "de", [(3, (45,))]),
    ("Herd (Se 3, Bild 45).", "de", [(3, (45,))]),
    ("Herd (Serie 3, Bild 40 bis 42).", "de", [(3, (40, 41, 42))]),
    ("nodus met centrale calcificatie. (Serie 5 ima 456. Radiologisch", "nl", [(5, (456,))]),
    ("Axillair links 68 x 40 mm (IMA 8-34) Axillair rechts 58 x 32 mm (IMA 3-38)", "nl", [(8, (34,)), (3, (38,))]),
    ("hypodensiteiten IMA 75 en 90. Geen nieuwe lesies.", "nl", [(None, (75, 90))]),
    ("Herd (Serie 3, Bild 45).", None, [(3, (45,))]),
    ("Nodule (se 3 im 45).", None, [(3, (45,))]),
    # a series then a preposition or a parenthesis before its image lost the series: the image was placed in the
    # primary series
    ("Nodule in series 3 on image 45.", "en", [(3, (45,))]),
    ("Nodule seen in series 3, at images 45-47.", "en", [(3, (45, 46, 47))]),
    ("Nodule, series 3 (image 45).", "en", [(3, (45,))]),
    ("Herd in Serie 3 im Bild 45.", "de", [(3, (45,))]),
    ("Herd in Serie 3 auf Bild 45.", "de", [(3, (45,))]),
    ("Nodus in serie 3 op beeld 45.", "nl", [(3, (45,))]),
    # the prior exam's image, named by an adverb ("previously image 40"), a comparison study, or a prior exam
    # followed by a preposition, was placed on this study's image 40, another slice
    ("Nodule now 6 mm (series 2, image 50), previously 4 mm (series 2, image 41).", "en", [(2, (50,))]),
    ("Nodule (series 3 image 45, previously series 3 image 40).", "en", [(3, (45,))]),
    ("Nodule (series 3, image 45), previously image 40.", "en", [(3, (45,))]),
    ("Nodule (series 3, image 45), formerly 4 x 5 mm on image 40.", "en", [(3, (45,))]),
    ("Herd Serie 3 Bild 45, vormals Serie 3 Bild 40.", "de", [(3, (45,))]),
    ("Herd (Serie 3, Bild 45), zuvor 4 mm (Serie 3, Bild 40).", "de", [(3, (45,))]),
    ("Herd (Serie 3, Bild 45), in der Vergleichsuntersuchung Serie 3 Bild 40.", "de", [(3, (45,))]),
    ("Nodule (series 3 image 45) measured 4 mm on the prior CT in series 3, image 40.", "en", [(3, (45,))]),
    ("Nodus (serie 3, beeld 45), voorheen 4 mm (serie 3, beeld 40).", "nl", [(3, (45,))]),
    ("Nodule 6 mm (series 3, image 45), 4 mm on 1/1/2020 (series 3, image 40).", "en", [(3, (45,))]),
    ("Herd (Serie 3, Bild 45), Serie 3 Bild 40 am 1.1.2020.", "de", [(3, (45,))]),
    # ... while a finding the past only qualifies, or a dated exam compared with, stays on this exam
    ("The previously described nodule (series 3, image 45) is stable.", "en", [(3, (45,))]),
    ("Nodule previously 4 mm, now 6 mm (series 3, image 45).", "en", [(3, (45,))]),
    ("Compared with the 2023 CT (series 3, image 40), stable.", "en", [(3, (40,))]),
    ("Herd vergleichsweise klein (Serie 3, Bild 45).", "de", [(3, (45,))]),
    ("Nodule unchanged since 1/1/2020 (series 3, image 45).", "en", [(3, (45,))]),
    # a series number without its word after a joint: image 4 was mined in series 3, image 60 left bare
    ("Nodules series 3, image 45 and 4, image 60.", "en", [(3, (45,)), (4, (60,))]),
    ("Herde Serie 3, Bild 45 und 4, Bild 60.", "de", [(3, (45,)), (4, (60,))]),
    # ... and before a weak 'Im': image 4 was mined in series 3 and image 60 too
    ("Nodule (Se 3 Im 45 and 4, Im 60).", "en", [(3, (45,)), (4, (60,))]),
    ("Nodules (Se 3 Im 45, 4, Im 60-61).", None, [(3, (45,)), (4, (60, 61))]),
    ("Nodules (Se 3 Im 45 and 50, Im 60).", "en", [(3, (45, 50)), (3, (60,))]),
    ("Nodules (Se 3 Im 45, 47 und 49).", None, [(3, (45, 47, 49))]),
    # a chain of them: series 5 was read as image 5 of series 4, and image 12 placed in series 4
    ("Herde Serie 3 Bild 45 und 4, Bild 60 und 5, Bild 12.", "de", [(3, (45,)), (4, (60,)), (5, (12,))]),
    ("Nodules (Se 3 Im 45, 4, Im 60 and 5, Im 12).", "en", [(3, (45,)), (4, (60,)), (5, (12,))]),
    # a '#' for the image word, and a number's word in a compound or spelled out: the reference was lost
    ("Nodule (series 4 #45).", "en", [(4, (45,))]),
    ("Herd (Serie 4, #45-47).", "de", [(4, (45, 46, 47))]),
    ("Herd (Bildnummer 45).", "de", [(None, (45,))]),
    ("Herd (Seriennummer 3, Bild Nr 45).", "de", [(3, (45,))]),
    ("Laesie (serienummer 3, beeldnummer 45).", "nl", [(3, (45,))]),
    ("Nodule (series number 3, image number 45).", "en", [(3, (45,))]),
    # a parenthesised list of pairs: both references were lost
    ("Nodules (4:45, 4:60).", "en", [(4, (45,)), (4, (60,))]),
    ("Herde (4/45 und 5/12).", "de", [(4, (45,)), (5, (12,))]),
    # an en or em dash between a series and its image lost the series: image 45 was placed in the primary series
    ("Nodule (series 3 – image 45).", "en", [(3, (45,))]),
    ("Herd (Serie 3 — Bild 45).", "de", [(3, (45,))]),
    ("Herd (aktuell Se 3 Bild 45, damals Se 2 Bild 40).", "de", [(3, (45,))]),
    # a connector inside the parenthesis before the series: image 45 was placed in the primary series
    ("Nodule on image 45 (of series 3).", "en", [(3, (45,))]),
    ("Herd auf Bild 45 (der Serie 3).", "de", [(3, (45,))]),
    # a letter each for series and image: the reference was lost
    ("Nodule (S3/I45).", "en", [(3, (45,))]),
    ("Nodules (s3, i45-47).", None, [(3, (45, 46, 47))]),
    ("Herd in S2 (S3 I12).", "de", [(3, (12,))]),
    # a number before ", image" that continues the list upwards, or ends one without a series, is its last image
    # (image 47 was read as the next reference's series, or lost); below the list after a series it is a series
    ("Nodules (series 3 images 45 and 47, image 50).", "en", [(3, (45, 47)), (3, (50,))]),
    ("Nodules series 3 images 45, 47, image 50.", "en", [(3, (45, 47)), (3, (50,))]),
    ("Herde Serie 3 Bilder 45 und 47, Bild 50.", "de", [(3, (45, 47)), (3, (50,))]),
    ("Nodules (images 45 and 47, image 50).", "en", [(None, (45, 47)), (None, (50,))]),
    ("Herde (Bilder 45 und 47, Bild 50).", "de", [(None, (45, 47)), (None, (50,))]),
    ("Nodules on images 45 and 47, image 50 of series 3.", "en", [(3, (45, 47)), (3, (50,))]),
    ("Nodules (series/images 3/45 and 47, image 50).", "en", [(3, (45, 47)), (3, (50,))]),
    ("Nodules (Se/Im 3/45 and 4, image 60).", "en", [(3, (45,)), (4, (60,))]),
    ("Nodules (series 3, image 45, 47, image 50).", "en", [(3, (45, 47)), (3, (50,))]),
    ("Nodules (series 3, images 45-47 and 4, image 60).", "en", [(3, (45, 46, 47)), (4, (60,))]),
    ("Nodules (series 3, image 45 and 10001, image 60).", "en", [(3, (45,)), (10001, (60,))]),
    # a range's end before ", image" is no series: the reference lost its series 3
    ("Nodules (series 3, image 45-47, image 50).", "en", [(3, (45, 46, 47)), (3, (50,))]),
    # a few words of the clause between the series and its image: the image was placed in the primary series
    ("Nodule in series 3, best seen on image 45.", "en", [(3, (45,))]),
    ("Nodule in series 3, best seen on image 45 and image 50.", "en", [(3, (45,)), (3, (50,))]),
    ("Herd in Serie 3, am besten im Bild 45 abgrenzbar.", None, [(3, (45,))]),
    # ... but not across a sentence end, a semicolon, another clause, or onto a reformat
    ("Lung kernel in series 3. Nodule on image 45.", "en", [(None, (45,))]),
    ("Lung kernel in series 3; nodule on image 45.", "en", [(None, (45,))]),
    ("Reviewed series 3 and nodule on image 45.", "en", [(None, (45,))]),
    # a prior exam's reference after "; " or ", " left this exam's reference before it unmined
    ("Nodule (series 3 image 45; series 3 image 40 on prior).", "en", [(3, (45,))]),
    ("Nodule (series 3 image 45, series 3 image 40 on prior).", "en", [(3, (45,))]),
    # "unchanged from the prior CT" compares with it: the reference is this exam's, and was lost
    ("Nodule unchanged from the prior CT (series 3, image 45).", "en", [(3, (45,))]),
    # a clause that opens on the prior exam turns to this one at "now"
    ("On the earlier study, nodule on series 3 image 45, now 6 mm on series 3 image 50.", "en", [(3, (50,))]),
    # a range past the cap that runs down, or from the first image, is none; the list's other items stay
    ("Nodules (images 12, 98-2).", "en", [(None, (12,))]),
    # a '#' repeated in its list, or before the series that closes the parenthesis: image 47, or the reference, was
    # lost; before a lesion's number it is none
    ("Nodules series 3, #45 and #47.", "en", [(3, (45, 47))]),
    ("Nodule (#45, series 3).", "en", [(3, (45,))]),
    ("Target lesion (#2, series 3, image 45).", "en", [(3, (45,))]),
    # a PACS overlay's total on the second reference of a chain: it was lost
    ("Nodules (Se 3 Im 45/120 and 4, Im 60/200).", "en", [(3, (45,)), (4, (60,))]),
    ("Nodules (Se 3 Im 45 and 4, im 6 weeks ago).", "en", [(3, (45,))]),
    # German 'Bi.' next to a series, 'nr.' compounded with the image word, 'key im', Dutch 't/m': lost
    ("Herd (Se. 3, Bi. 45).", "de", [(3, (45,))]),
    ("Herd (Se 3/Bi 45-47).", None, [(3, (45, 46, 47))]),
    ("Laesie (beeldnr. 45).", "nl", [(None, (45,))]),
    ("Herd (Bildnr. 45, Seriennr. 3).", "de", [(3, (45,))]),
    ("Nodule (key im 45).", "en", [(None, (45,))]),
    ("Laesie (serie 3 beeld 45 t/m 47).", "nl", [(3, (45, 46, 47))]),
    ("Laesie (serie 3, beelden 45 tot en met 47).", "nl", [(3, (45, 46, 47))]),
    # a German ordinal after a weak 'im' is no image ('in the 6th segment'): image 6 was placed in series 3 or 4
    ("Herd Se 3 Im 45 und 4, im 6. Segment.", None, [(3, (45,))]),
    ("Herd Se 3 Im 45 und im 6. Segment.", None, [(3, (45,))]),
    # a comparison with a prior exam after this exam's reference: the prior's image 40 was placed on this exam
    ("Nodule (se 3, im 45) compared to prior (se 2, im 40).", "en", [(3, (45,))]),
    ("Herd (Serie 3, Bild 45), im Vergleich zur Voruntersuchung (Serie 2, Bild 40) größer.", "de", [(3, (45,))]),
    # a past size after this exam's reference is the prior's: its image 40 was placed on this exam
    ("Nodule 6 mm (image 45), was 4 mm (image 40).", "en", [(None, (45,))]),
    ("Herd 6 mm (Serie 3, Bild 45), war 4 mm (Bild 40).", "de", [(3, (45,))]),
    ("Nodule was 4 mm (image 40).", "en", [(None, (40,))]),  # no reference of this exam before it: kept
    ("Nodule 6 mm (image 45). It was 4 mm (image 40) before.", "en", [(None, (45,)), (None, (40,))]),
    ("Nodule (series 3, image 45). Unchanged compared to the prior CT (series 3, image 40).", "en",
     [(3, (45,)), (3, (40,))]),
    # the series' plane before it: image 45 of the reformat was placed in the primary series
    ("Nodule (image 45, coronal series 601).", "en", [(601, (45,))]),
    ("Herd (Bild 45 der koronaren Serie 601).", "de", [(601, (45,))]),
    ("Nodule image 45 of the axial series 3.", "en", [(3, (45,))]),
    # a year after 'in' names the exam of that year: its image 40 was placed on this exam
    ("Nodule 6 mm (image 45), 4 mm in 2021 (image 40).", "en", [(None, (45,))]),
    ("Nodule unchanged from 2019 (series 3, image 45).", "en", [(3, (45,))]),
    # a date after 'from'/'aus'/'uit' after a reference names that exam: its image 40 was placed on this exam
    ("Nodule 6 mm (series 3, image 45), 4 mm (series 3, image 40 from 2019).", "en", [(3, (45,))]),
    ("Herd 6 mm (Serie 3, Bild 45), 4 mm (Serie 3, Bild 40 aus 2019).", "de", [(3, (45,))]),
    # 'resp.' (respectively) between two images: the second was lost
    ("Herde (Serie 4, Bild 87 resp. 90).", "de", [(4, (87, 90))]),
    ("Noduli (serie 4, beeld 87 resp. 90).", "nl", [(4, (87, 90))]),
    ("Nodules (3:45) and (3:50).", "en", [(3, (45,)), (3, (50,))]),
    # a dashed date after the list is none of its images: it was read as images 3 to 12 and 2021, or image 12
    ("Laesie (serie 3, beeld 45, 12-03-2021).", "nl", [(3, (45,))]),
    ("Nodule (series 3, images 45-47, 2019-03-12).", "en", [(3, (45, 46, 47))]),
    ("Herd Serie 3 Bild 45 u. 47, 2021-01-05 unverändert.", "de", [(3, (45, 47))]),
    # ... while a prior exam after the reference's clause ends, or one only compared with, leaves it on this exam
    ("Nodule (series 3, image 45), prior CT 4 mm.", "en", [(3, (45,))]),
    ("Nodule (series 3, image 45, compared with the prior CT).", "en", [(3, (45,))]),
    ("Herd (3/45) größenkonstant zur VU.", "de", [(3, (45,))]),
    # "old" as an adjective, a size labelled by a year, a date in a sentence: no label of the reference's clause
    ("Old granuloma (series 2, image 40).", "en", [(2, (40,))]),
    ("Nodule 6 mm (2019: 4 mm) (series 3, image 45).", "en", [(3, (45,))]),
    ("Bold: series 3 image 45.", "en", [(3, (45,))]),
    ("Herd (Salt: Serie 3 Bild 45).", "de", [(3, (45,))]),
    # ... and a labelled prior exam ends at the next label
    ("Nodule (old: se 2 im 40, new: se 3 im 45).", "en", [(3, (45,))]),
    ("Nodule (series 3, image 45), old: series 2 image 40.", "en", [(3, (45,))]),
    ("Nodule (series 3, image 45; 2019: series 2, image 40).", "en", [(3, (45,))]),
    # "no" without its stop, and a colon after one image in a parenthesis: the reference was lost
    ("Nodule image no 45.", "en", [(None, (45,))]),
    ("Nodule (series no 3, image no 45).", "en", [(3, (45,))]),
    ("Nodule (Image: 45).", "en", [(None, (45,))]),
    ("Nodule ( Image No: 45 ).", "en", [(None, (45,))]),
    ("Herd (Bild: 45).", "de", [(None, (45,))]),
    ("Laesie (beeld: 45).", "nl", [(None, (45,))]),
    ("Nodule (Se:3 Im:45).", "en", [(3, (45,))]),
    # a letter pair spaced in capitals: the reference was lost
    ("Nodule (S 3 I 45).", "en", [(3, (45,))]),
    ("Nodule S 3 I 45, unchanged.", "en", [(3, (45,))]),
    ("Nodules (S 3, I 45-47).", "en", [(3, (45, 46, 47))]),
    ("Herd (S3 I 45).", "de", [(3, (45,))]),
    ("Fracture of S 3 (image 45).", "en", [(None, (45,))]),
    # the image word before its series, the numbers after it: the reference was lost
    ("Nodules on images from series 3, 45-47.", "en", [(3, (45, 46, 47))]),
    ("Nodule (image from series 3, 45), stable.", "en", [(3, (45,))]),
    ("Herd (Bilder aus Serie 3: 45 bis 47).", "de", [(3, (45, 46, 47))]),
    ("Laesie (beelden uit serie 3, 45-47).", "nl", [(3, (45, 46, 47))]),
]

NEGATIVES: list[tuple[str, str | None]] = [
    # a count of a series' images after a colon, not a reference to its last image
    ("Number of images in series 3: 300", "en"),
    ("Images in series 2: 412", "en"),
    ("Anzahl der Bilder in Serie 3: 320", "de"),
    ("beelden van serie 3: 300", "nl"),
    ("Compared with the CT on 3/4/2021, no change.", "en"),
    ("Prior study dated (12/03), stable.", "en"),
    ("Seen previously on (3/45).", "en"),
    ("On the prior exam series 3 image 45 it measured 4 mm.", "en"),
    ("Previously seen on series 3, image 45.", "en"),
    ("Nodule (series 3, image 45 of the prior CT).", "en"),
    ("On the prior chest CT of 01/2023 (series 4, image 88) it measured 4 mm.", "en"),
    ("Nodule measuring 3:45 mm.", "en"),
    ("Nodule of 3/4 mm.", "en"),
    ("Ratio (3:1) of the airways.", "en"),
    ("A series of images was acquired.", "en"),
    ("T1 image shows no lesion.", "en"),
    ("Image quality is limited by motion.", "en"),
    ("The scan was done at 3:45 this afternoon.", "en"),
    ("Blood pressure 120/80 mmHg.", "en"),
    ("Blood pressure (120/80).", "en"),
    ("About 1/2 of the lobe is collapsed.", "en"),
    ("Involving (1/2) of the segment.", "en"),
    ("Images were reconstructed at 1 mm.", "en"),
    ("Images 3-5 mm thick were reconstructed.", "en"),
    ("Rekonstruktion Bilder 1 bis 2 mm.", "de"),
    ("Images 1 or 2 mm thick were reconstructed.", "en"),
    ("Rekonstruktion Bilder 1 bzw. 2 mm.", "de"),
    ("Beelden 1 of 2 mm dik.", "nl"),
    ("Nodule (image 45/120).", "en"),  # image 45 of 120, or series 45 image 120 ('image 3/45')?
    ("Nodule (Im 3/45).", "en"),
    ("Nodule (Se 3 Im 45/12).", "en"),  # no image past the total
    ("Serie 3 im 03/2021 unauffällig.", None),
    ("Serie 3 im 3/2021 unauffällig.", None),
    ("Schichten 1 oder 2 mm dick.", "de"),
    ("Slices 1 and/or 2 mm apart.", "en"),
    ("Sneden 1 en/of 2 mm.", "nl"),
    ("Series 3, images 2 or 3 mm apart.", "en"),
    ("Serie 3 im 12/03 unauffällig.", None),
    ("Nodule (Se 3 Im 45/120 mm).", "en"),
    ("Image 2/3 of the lobe.", "en"),
    ("Schichtdicke 1 mm, Schichten 1,5 mm.", "de"),
    ("Slice thickness 1 mm, slices 0.625 mm.", "en"),
    ("Slices 1,250 mm apart.", "en"),
    ("Sneden van 5 mm.", "nl"),
    ("Sneden 1 tot 2 mm dik.", "nl"),
    ("Schichten von 1 bis 2 mm, Bilder 3 bis 4 mm.", "de"),
    ("Slices 1 to 2 mm apart.", "en"),
    ("Nodule on image 1,5 cm.", "en"),
    ("Images: 245, slice thickness 1 mm.", "en"),
    ("Image: 3 phases acquired.", "en"),
    ("Series: 3 acquisitions, no contrast.", "en"),
    ("Serie: 3 Phasen, Bilder: 300.", "de"),
    ("Ser. 3 ohne Befund.", "de"),
    ("Beelden: 120 in totaal.", "nl"),
    ("Series 3: no change, images reviewed.", "en"),
    ("Serie 3 Phasen, 2 Bilder.", "de"),
    ("Image 3D reconstructions were reviewed.", "en"),
    ("3 images were discarded.", "en"),
    ("Series 2 is degraded by motion.", "en"),
    ("Three images; series 2 degraded by motion.", "en"),
    ("Comparison with the image from November 9, 2021.", "en"),
    ("Follow-up recommended (3/2019 guideline).", "en"),
    ("Last study (3/2019).", "en"),
    ("Nodule 5 mm on image, unchanged.", "en"),
    ("Image 5 mm slices were reconstructed.", "en"),
    ("Ratio 1:2 between lobes (1:2).", "en"),
    ("Attenuation ratio (3:4) of both lobes.", "en"),
    ("Heart size (12.5 cm) normal.", "en"),
    ("Ejection fraction 55%, image noise moderate.", "en"),
    ("Im 3. Segment kein Herd.", "de"),
    ("Im Bild kein Herd.", "de"),
    ("Bildqualität eingeschränkt.", "de"),
    ("Bildgebung vom 3.4.2020 zum Vergleich.", "de"),
    ("Eine Serie von Aufnahmen wurde angefertigt.", "de"),
    ("Voruntersuchung vom (12/03).", "de"),
    ("In der Voruntersuchung (Serie 4, Bild 30) kleiner.", "de"),
    ("Herd (Serie 3, Bild 45 der Voruntersuchung).", "de"),
    ("Op het vorige onderzoek (serie 3, beeld 45).", "nl"),
    ("Blutdruck 120/80 mmHg.", "de"),
    ("Aufnahmeserie 3 ohne Befund.", "de"),
    ("Befund um 3:45 Uhr mitgeteilt.", "de"),
    ("Geen veranderingen in het pulmonale beeld.", "nl"),
    ("Target lesies: 12-06 Axillair links 68 x 40 mm", "nl"),
    ("beeld passend bij een metastase", "nl"),
    ("No changes in the pulmonary image, with strong indications.", None),
    ("Geb. 05.03.1950, Tel. 089/4400-52311.", None),
    ("Nodule measured 4 mm on the comparison study (series 3, image 45).", "en"),
    ("Nodule on the comparison exam series 3 image 45.", "en"),
    ("Nodule (series 3, image 45 on the 2019 CT).", "en"),
    ("Nodule (series 3, image 45 of the CT of 1/1/2020).", "en"),
    ("Nodule measured 4 mm on the 2023 CT (series 3, image 40).", "en"),
    ("Herd im Vorbefund in Serie 3 Bild 40.", "de"),
    ("Herd in der VU auf Bild 40.", "de"),
    ("Lesion in segments (6/7).", "en"),
    ("Läsion in Segment (7/8).", "de"),
    ("Lesion PI-RADS (4/5).", "en"),
    ("Fracture at level (11/12).", "en"),
    ("Nodule, previously 4 mm (series 3, image 45).", "en"),
    ("Previously image 40 of series 3.", "en"),
    ("Herd, früher 4 x 5 mm (Serie 3, Bild 40).", "de"),
    ("On 1/1/2020 (series 3, image 40) it measured 4 mm.", "en"),
    ("Series 3 in images 1 mm thick.", "en"),
    ("Nodule series 3 on image 45 of the prior CT.", "en"),
    ("Serie 3 auf Bildern 2 mm rekonstruiert.", "de"),
    ("Serie 3 im Bild 2 x 3 cm groß.", "de"),
    ("Series 3 at images 5 mm apart.", "en"),
    ("Serie 3 ab Bild 1 cm.", "de"),
    ("Op 01-02-2021 (serie 3, beeld 40) 4 mm.", "nl"),
    ("Nodule 4 mm (series 3, image 40 on 12.03.2021).", "en"),
    # a clause that opens on the prior exam, or an exam of another modality: not this CT's images
    ("On the earlier study, nodule on series 3 image 45.", "en"),
    ("Auf der Voruntersuchung Herd in Serie 3 Bild 45.", "de"),
    ("Nodule on the PET/CT (series 3, image 45).", "en"),
    ("Nodule (series 3, image 45 on the MRI).", "en"),
    ("In series 3, previously seen on image 45.", "en"),
    ("On the prior CT in series 3, best seen on image 45.", "en"),
    ("Serie 3, Herd im 6. Segment.", "de"),
    # a technique statement covering the series, and a range past the cap that runs down (a typo, or another
    # notation): their ends were placed as findings
    ("Images 1-300 were reviewed.", "en"),
    # counts, qualities and a "series of" findings: no image named
    ("Key image saved to PACS.", "en"),
    ("Key images: 3.", "en"),
    ("2 series of CT were acquired.", "en"),
    ("A series of 3 nodules in the right lung.", "en"),
    ("Series of 4 nodules, largest 5 mm.", "en"),
    ("3 images of series 2 were reviewed.", "en"),
    ("Image quality: 3 of 5.", "en"),
    ("Series 2 and 3 were reconstructed.", "en"),
    ("Imaging at 3 and 6 months.", "en"),
    ("Bildqualität 3 von 5.", "de"),
    ("Eine Serie von 3 Herden.", "de"),
    ("2 Serien nativ.", "de"),
    ("Serie 3 unauffällig, im Segment 6 ein Herd.", None),
    # "at"/"auf" without an image number before them
    ("Images at 3 and 6 months showed no change.", "en"),
    ("Images reconstructed at series 2 kernel.", "en"),
    ("Bild auf Serie 3 gespeichert.", "de"),
    # a time span after an image word: the prior exam's age, no image number
    ("Compared with images 6 months ago, stable.", "en"),
    ("Image 3 days after surgery.", "en"),
    ("Vergleich mit Bildern 3 Monate zuvor.", "de"),
    ("Vergleich mit Bildern 1 Monat zuvor.", "de"),
    ("Vergelijking met beelden 6 maanden geleden.", "nl"),
    ("Axial images 1-250 obtained.", "en"),
    ("Series 2 axial images 1-250.", "en"),
    ("Nodule images 98-2.", "en"),
    ("Mass (image 145-4).", "en"),
    # a weak 'im' after a series number is German 'in the' unless a reference in its words came before
    ("Herd 4, im 6. Segment.", None),
    ("Segment 4, im 6 Wochen kein Herd.", None),
    ("Image numbering was wrong, Bildnummerierung 3 fehlt.", None),
    # a PACS overlay's 'image 45/120' without a series: image 45 of 120, or series 45 image 120 ('image 3/45')
    ("Herd (Bild 45/120).", "de"),
    # ... and a list of pairs whose numbers are fractions, pressures or a measurement
    ("Nodules (3/4, 5/6) of the lobe.", "en"),
    ("Blood pressure (120/80, 130/85).", "en"),
    ("Nodule (12/10/15 mm).", "en"),
    ("Nodules (3:45, 1:1).", "en"),
    # a liver segment, a sacral vertebra, a guideline: no 'I' and image number after them
    ("Lesion in segments S3 and S4, S3/S4 border, 45 mm.", "en"),
    ("Fraktur S3, Therapie nach S3-Leitlinie, LWS3 I45.", "de"),
    # levels, sequences, dates and measurements with a slash, dash or colon
    # the new spellings on a prior exam stay that exam's
    ("Nodule on image 45 (of series 3 on the prior CT).", "en"),
    ("Herd auf Bild 45 (der Serie 3 der Voruntersuchung).", "de"),
    ("Nodule (series 4 #45 on the prior CT).", "en"),
    # 'damals' / 'destijds' (back then) put the reference on the prior exam: its image 40 was placed on this one
    ("Herd, damals Serie 2 Bild 40.", "de"),
    ("Laesie, destijds serie 2 beeld 40.", "nl"),
    ("Protrusion Th 4/5, Bandscheibe C5-6, T2 hyperintens.", "de"),
    ("Nodule 12/10/15 mm, last seen 3/4/21 (4:45 pm).", "en"),
    ("Herd (12/10/15 mm) im 3/4 des Lappens, Bild 3/4.", "de"),
    # the prior exam named inside the parenthesis after the image: its image 45 was placed on this exam
    ("Nodule on image 45 (of the prior CT series 3).", "en"),
    # a count after '#', a list of clock times, an ordinal after 'im': no image
    ("Serie 3 #2 Herde.", "de"),
    ("Series 3 # 2 lesions.", "en"),
    ("Series 3 #2 and 3 lesions.", "en"),
    ("Series 3 #2, #3 and #4 lesions.", "en"),
    ("Series 3 #2, 3 lesions.", "en"),
    ("Aufnahmen um (7:45, 8:10, 8:30) Uhr.", "de"),
    ("Contrast at (8:30, 9:15).", "en"),
    ("Nodule (8:30, 9:15).", "en"),
    ("Serie 3 im 6. Segment ein Herd.", None),
    ("Rippenfraktur im 7. ICR, Serie 3 im 4. Segment.", None),
    ("Serie 3 #1 und #2 Herde.", "de"),
    ("Lesion #2 (series 3) 5 mm.", "en"),
    # 'S.' is German 'Seite' (page), 'B.' no image word of its own; 'bi' alone begins BI-RADS and 'bilateral'
    ("Herd (S. 3, B. 45).", "de"),
    ("BI-RADS 4, bi 3 Herde.", None),
    ("Sneden 1 t/m 2 mm dik.", "nl"),
    ("Nodule (image 40 in 2021).", "en"),
    ("Herd in 2020 (Serie 3, Bild 40).", "de"),
    ("Herd (Bild 87 der Serie 4 vom 01.02.2021).", "de"),
    ("Laesie (beeld 87 van 01-02-2021).", "nl"),
    ("Nodule (series 3, image 45 from 1/1/2020).", "en"),
    ("Nodule series 3 image 45 from 2019.", "en"),
    # a dashed date after an image word is no range: 'beelden 12-03-2021' was images 3 to 12 and 2021
    ("Vergelijking met beelden 12-03-2021.", "nl"),
    ("Compared with images 2019-03-12.", "en"),
    ("Vergleich mit Bildern 12-03-2021.", "de"),
    # a prior exam named, not only "prior", where the reference's clause ends: its image 45 was placed on this exam
    ("Herd (Serie 3, Bild 45, Voruntersuchung).", "de"),
    ("Herd (Serie 3, Bild 45, VU).", "de"),
    ("Nodule (series 3, image 45, prior CT).", "en"),
    ("Laesie (serie 3, beeld 45, vooronderzoek).", "nl"),
    # a month and year in parentheses after a prior exam named by its noun: it was placed as series 12, image 19
    ("Herd größenkonstant zur VU (03/21).", "de"),
    ("Herd unverändert gegenüber der Voruntersuchung (12/19).", "de"),
    ("Nodule unchanged from the earlier (12/19).", "en"),
    ("Laesie (serie 3, beeld 40 uit 2019).", "nl"),
    ("Schichten 1 resp. 2 mm.", "de"),
    # a time or a segment pair joined to one that its context names: (3:50) and (7/8) were placed as slices
    ("Nodule at (3:45) and (3:50).", "en"),
    ("Lesion in segments (6/7) and (7/8).", "en"),
    ("Serie 3 #1 Herd im 6. Segment.", "de"),
    ("Laesie (beeld 45 van het vorige onderzoek).", "nl"),
    # a size, a level or a segment after a past tense is none
    ("Nodule 6 mm (T2), was 4 mm (S3).", "en"),
    ("Herd war 4 mm (Th 4/5, C5-6).", "de"),
    ("Lesions were 4 mm, 5 mm (3:45 pm).", "en"),
    # an image above its total, or a month and year, before a series
    ("Nodule (image 87/30, series 4).", "en"),
    ("Nodule (image 12/2021, series 4).", "en"),
    # a clause labelled as the prior exam's by a year, a date or "old" names that exam's images: they were mined
    ("Nodule (2019: series 2, image 40).", "en"),
    ("Nodule (12/2019: series 2, image 40).", "en"),
    ("Nodule (old: se 2 im 40).", "en"),
    ("Herd (VU: Se 2 Bild 40).", "de"),
    ("Herd (alt: Se 2 Bild 40).", "de"),
    ("Laesie (oud: serie 2 beeld 40).", "nl"),
    # a count of a technique's images, also in a parenthesis; "no" before a word
    ("Technique: 1 mm (Images: 245).", "en"),
    ("Technik (Schichten: 320, Bilder: 640).", "de"),
    ("Nodule image: 45.", "en"),
    ("Image no nodule, 4 mm.", "en"),
    # "S 3" is a sacral vertebra without its capital "I" and image number
    ("Fracture of S 3.", "en"),
    ("Fraktur S 1 bis S 3, Nerv S 2 i 3 mm.", "de"),
    ("Sacral fracture (S 3 i 45).", "en"),
    ("Dornfortsatz S 1 I 2 mm.", "de"),
    # ... where the numbers after the series list series, or a size
    ("Images from series 3, 4 and 5 were reconstructed.", "en"),
    ("Images from series 3, 4-6 were fused.", "en"),
    ("Images from series 3, 601 show the same.", "en"),
    ("Images from series 3, 4 mm thick.", "en"),
    ("Nodule on images from series 3, 45-47 of the prior CT.", "en"),
    ("Nodule (prior: series 2, image 40).", "en"),
]


def test_phrase_tables_are_large_and_balanced() -> None:
    assert len(POSITIVES) + len(NEGATIVES) >= 60
    assert len(NEGATIVES) >= (len(POSITIVES) + len(NEGATIVES)) / 2
    assert {lang for _, lang, _ in POSITIVES} >= {"en", "de", "nl", None}


@pytest.mark.parametrize(("text", "language", "expected"), POSITIVES)
def test_positive_phrasings(text: str, language: str | None, expected: list) -> None:
    refs = mine_image_references(text, language=language)
    assert [(r.series_number, r.image_numbers) for r in refs] == expected
    for ref in refs:
        assert text[ref.start : ref.end] == ref.text
        assert ref.series_stated is (ref.series_number is not None)
        assert ref.sentence_start <= ref.start < ref.sentence_end


@pytest.mark.parametrize(("text", "language"), NEGATIVES)
def test_false_friends_are_rejected(text: str, language: str | None) -> None:
    assert mine_image_references(text, language=language) == []


def test_forms_ranges_and_cap() -> None:
    (ref,) = mine_image_references("Atelectasis (series 2, images 40-500).", max_range_images=64)
    assert ref.image_numbers == (40, 500) and ref.truncated and ref.is_range
    (ref,) = mine_image_references("Atelectasis (series 2, images 10-12).")
    assert ref.image_numbers == (10, 11, 12) and not ref.truncated and ref.form is ReferenceForm.SERIES_IMAGE
    (ref,) = mine_image_references("Nodule (IMA 8-34).")
    assert ref.form is ReferenceForm.IMA_DASH and not ref.is_range
    # an abbreviated end ('45-7' is 45 to 47, '145-52' 145 to 152) is no range down to image 7
    (ref,) = mine_image_references("Nodule (series 3, images 45-7).")
    assert ref.image_numbers == (45, 46, 47) and ref.is_range
    (ref,) = mine_image_references("Nodule (series 3, images 145-52).")
    assert ref.image_numbers == tuple(range(145, 153))
    (ref,) = mine_image_references("Nodule (series 3, images 47-45).")
    assert ref.image_numbers == (45, 46, 47)


def test_a_reference_to_a_prior_exam_is_not_placed_in_this_volume() -> None:
    # its series and image numbers are the prior study's: this study's image 45 is another slice
    text = "Nodule now 8 mm (series 2, image 30); on the prior CT, series 2 image 45 it measured 4 mm."
    pairs, quarantine = mine_snippets("r", text, [stack(2, 0.0, 1.0, 100)], grid(z0=0.0, dz=1.0, n=100), SnippetsConfig())
    assert [p.image_number for p in pairs] == [30] and quarantine == []


def test_a_year_after_an_image_list_is_no_image_where_the_series_is_shorter() -> None:
    # "(series 3, image 45, 2019)" gave images 45 and 2019: image 2019 was quarantined as out of range
    text = "Nodule (series 2, image 45, 2019). Mass (series 2, images 40-41, 2021). Cyst (series 2, images 45 and 2019)."
    assert [r.year_after_list for r in mine_image_references(text)] == [2019, 2021, None]
    assert [r.year_after_list for r in mine_image_references(
        "(series 2, image 45, 1989), (series 2, image 45-2019), (series 2, image 2019), (image 45, 12019)")] == [None] * 4
    short = stack(2, 0.0, 1.0, 100)
    pairs, quarantine = mine_snippets("r", text, [short], grid(z0=0.0, dz=1.0, n=100), SnippetsConfig())
    assert [p.image_number for p in pairs] == [45, 40, 41, 45]
    assert [(q.reason, q.item_id[-5:]) for q in quarantine] == [(QuarantineReason.IMAGE_OUT_OF_RANGE, "#2019")]
    # in a series that long, the number is its image
    pairs, quarantine = mine_snippets("r", text, [stack(2, 0.0, 1.0, 2500)], grid(z0=0.0, dz=1.0, n=2500),
                                      SnippetsConfig())
    assert [p.image_number for p in pairs] == [45, 2019, 40, 41, 2021, 45, 2019] and not quarantine


def test_mine_snippets_reads_its_config_section() -> None:
    series = [stack(2, 0.0, 1.0, 100)]
    g = grid(z0=0.0, dz=1.0, n=100)
    text = "Opacity (series 2, images 10-14). Herd (Serie 2, Bild 20)."
    pairs, _ = mine_snippets("r", text, series, g, SnippetsConfig(max_range_images=3, languages=("en",)))
    assert [p.image_number for p in pairs] == [10, 14]  # range over the cap: first and last; German ignored
    pairs, _ = mine_snippets("r", text, series, g, SnippetsConfig(bin_mm=5.0))
    assert [(p.image_number, p.bin_index, p.bin_mm) for p in pairs][-2:] == [(14, 2, 5.0), (20, 3, 5.0)]  # z 13, 19 mm


def test_language_restricts_keywords() -> None:
    assert mine_image_references("Herd (Serie 3, Bild 45).", language="en") == []
    assert len(mine_image_references("Herd (Serie 3, Bild 45).", language="de")) == 1
    with pytest.raises(SnippetError, match="unknown report language"):
        mine_image_references("x", language="fr")


def test_sentence_spans_given_and_fallback() -> None:
    text = "Lungs clear. Nodule (se. 3 im 4)! Another one on image 45 of series 3.\n\nImpression: nodules."
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "Lungs clear.",
        "Nodule (se. 3 im 4)!",
        "Another one on image 45 of series 3.",
        "Impression: nodules.",
    ]
    refs = mine_image_references(text)
    assert [r.sentence_index for r in refs] == [1, 2]
    # spans from the reports stage win; a reference outside them gets index -1 and the own split
    given = [(0, 12), (13, 33)]
    refs = mine_image_references(text, sentence_spans=given)
    assert [r.sentence_index for r in refs] == [1, -1]
    assert text[refs[1].sentence_start : refs[1].sentence_end] == "Another one on image 45 of series 3."


def test_an_image_joined_to_a_reference_with_a_series_takes_its_series() -> None:
    # "series 3 image 45 and image 60": image 60 is in series 3, not in whatever the primary series is
    cases = {
        "Nodules (series 3 image 45 and image 60).": [(3, (45,)), (3, (60,))],
        "Nodules on image 45 and image 60 of series 3.": [(3, (45,)), (3, (60,))],
        "Nodules series 3 image 45 or image 47.": [(3, (45,)), (3, (47,))],
        "Herde Serie 3 Bild 4, Bild 5 und Bild 6.": [(3, (4,)), (3, (5,)), (3, (6,))],
        "Nodule series 3 image 45 and image 12 of series 5.": [(3, (45,)), (5, (12,))],
        # past the first image's size: image 60 was placed in the primary series
        "Herd (Serie 3, Bild 45, 4 mm, und Bild 60, 5 mm).": [(3, (45,)), (3, (60,))],
        "Nodule (series 3, image 45, 6 mm; image 60, 4 mm).": [(3, (45,)), (3, (60,))],
        "Nodules (image 45, 4 x 3 mm, and image 60 of series 3).": [(3, (45,)), (3, (60,))],
        "Nodule (series 3, image 45, 6 mm), mass 4 cm (image 60).": [(3, (45,)), (None, (60,))],  # not joined
        "Nodule series 3 image 45. Another one on image 60.": [(3, (45,)), (None, (60,))],  # not joined
        "Nodule image 45\n\nSeries 3 image 60: mass.": [(None, (45,)), (3, (60,))],  # another paragraph
        # an image joined to one on a prior exam is on it too: neither is this study's
        "Nodule (series 3 image 45); on the prior CT series 2 image 40 and image 41.": [(3, (45,))],
    }
    for text, expected in cases.items():
        refs = mine_image_references(text)
        assert [(r.series_number, r.image_numbers) for r in refs] == expected, text
        assert [r.series_stated for r in refs] == [s is not None for s, _ in expected]
    # nor across the reports stage's sentences: a line of its own
    text = "Nodule image 45\nSeries 3 image 60: mass."
    refs = mine_image_references(text, sentence_spans=[(0, 15), (16, len(text))])
    assert [(r.series_number, r.image_numbers) for r in refs] == [(None, (45,)), (3, (60,))]
    # an image on a reformat takes no axial series: it kept its flag with series 3 (inconsistent fields)
    refs = mine_image_references("Nodule (image 45 on series 3 and image 80 on coronal).")
    assert [(r.series_number, r.image_numbers, r.series_stated, r.on_reformat) for r in refs] == [
        (3, (45,), True, False), (None, (80,), False, True)]
    # ... nor one whose plane is in a parenthesis after it; one whose series stands without its word states it
    text = "Nodule (series 3, image 45, 6 mm, and image 60 (coronal)). Nodule (series 3, image 45 and 4, image 61 coronal)."
    refs = mine_image_references(text)
    assert [(r.series_number, r.image_numbers, r.series_stated, r.on_reformat) for r in refs] == [
        (3, (45,), True, False), (None, (60,), False, True), (3, (45,), True, False), (4, (61,), True, False)]


# --------------------------------------------------------------------------------------------
# Resolution and placement
# --------------------------------------------------------------------------------------------
FOR = "1.2.826.0.1.3680043.8.498.1"


def stack(number: int, z0: float, dz: float, n: int, *, thickness: float | None = None, frame: str = FOR,
          first_instance: int = 1, axial: bool = True) -> SeriesSlices:
    """A slice table: instance first_instance.. at z0, z0 + dz, ..."""
    return SeriesSlices(
        series_number=number,
        series_uid=f"1.2.3.{number}",
        frame_of_reference_uid=frame,
        slice_thickness_mm=abs(dz) if thickness is None else thickness,
        instance_z={first_instance + k: z0 + k * dz for k in range(n)},
        is_axial=axial,
    )


def grid(z0: float = -100.0, dz: float = 2.5, n: int = 40, *, direction: tuple[float, ...] = IDENTITY,
         frame: str = FOR) -> VolumeGrid:
    return VolumeGrid("vol1", frame, (-150.0, -150.0, z0), (1.5, 1.5, dz), direction, (n, 64, 64))


def test_slice_position_uses_the_full_affine() -> None:
    g = grid(z0=-100.0, dz=2.5)
    assert slice_position(g, -100.0) == pytest.approx(0.0)
    assert slice_position(g, -75.0) == pytest.approx(10.0)
    # RAS-style direction (x and y flipped) shares +z superior: same slice
    ras = grid(direction=(-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
    assert slice_position(ras, -75.0) == pytest.approx(10.0)
    # z axis flipped (index 0 is the top slice): origin at the top, index grows downwards
    flipped = VolumeGrid("v", FOR, (0.0, 0.0, 0.0), (1.0, 1.0, 2.0), (1, 0, 0, 0, 1, 0, 0, 0, -1), (30, 8, 8))
    assert slice_position(flipped, -20.0) == pytest.approx(10.0)
    # a tilted grid: the plain-float affine agrees with numpy's inverse at the in-plane centre
    angle = math.radians(20.0)
    tilted = VolumeGrid("t", FOR, (-80.0, -90.0, -200.0), (0.8, 0.9, 2.0),
                        (1, 0, 0, 0, math.cos(angle), -math.sin(angle), 0, math.sin(angle), math.cos(angle)),
                        (50, 40, 30))
    m = np.asarray(tilted.direction).reshape(3, 3) @ np.diag(tilted.spacing_mm)
    centre = np.asarray(tilted.origin_mm) + m @ np.array([14.5, 19.5, 0.0])
    centre[2] = -150.0
    expected = (np.linalg.inv(m) @ (centre - np.asarray(tilted.origin_mm)))[2]
    assert slice_position(tilted, -150.0) == pytest.approx(expected)
    with pytest.raises(SnippetError, match="singular"):
        slice_position(VolumeGrid("bad", FOR, (0, 0, 0), (1, 1, 1), (1, 0, 0, 1, 0, 0, 0, 0, 1), (3, 3, 3)), 0.0)


def test_cross_reconstruction_bins_and_sentence_join() -> None:
    # corpus volume: 3 mm soft tissue; reference to the 1 mm lung kernel recon (series 4)
    series = [stack(2, -100.0, 3.0, 40), stack(4, -100.0, 1.0, 120)]
    g = grid(z0=-100.0, dz=3.0, n=40)
    text = "Lungs clear. Nodule right upper lobe (series 4, image 61). Heart normal (image 5)."
    sentences = [
        SentenceContext(0, 12, ("lungs",), ()),
        SentenceContext(13, 58, ("lungs",), ("lung_nodule",)),
        SentenceContext(59, 82, ("heart",), ()),
    ]
    config = SnippetsConfig(primary_series_number=2)
    pairs, quarantine = mine_snippets("r1", text, series, g, config, sentences=sentences, language="en")
    assert quarantine == []
    first, second = pairs
    assert (first.series_number, first.image_number, first.z_mm) == (4, 61, -40.0)
    assert first.slice_index == 20 and first.bin_index == math.floor(20 * 3.0 / 12.0) == 5
    assert first.snippet_text == "Nodule right upper lobe (series 4, image 61)."
    assert first.labels == ("lung_nodule",) and first.anatomies == ("lungs",) and first.series_stated
    assert (second.series_number, second.series_stated, second.slice_index, second.bin_index) == (2, False, 4, 1)


def test_range_collapses_onto_distinct_corpus_slices() -> None:
    series = [stack(4, 0.0, 1.0, 60)]
    g = grid(z0=0.0, dz=3.0, n=20)
    refs = mine_image_references("Opacity (series 4, images 10-15).")
    pairs, _ = resolve_references(refs, series, g, SnippetsConfig(), report_id="r", text="")
    # z 9..14 mm -> slices 3, 3, 4, 4, 4, 5 (nearest 3 mm slice)
    assert [(p.image_number, p.slice_index) for p in pairs] == [(10, 3), (12, 4), (15, 5)]


def test_image_numbers_follow_the_slice_table_not_their_order() -> None:
    # a series numbered from the head down (image 1 at the top), in a volume stored feet first (LPS) and
    # in one stored head first with every axis flipped (RAS-style x, y and a descending z): each image
    # lands on the corpus slice at its own z
    series = [stack(2, 0.0, -2.5, 40)]
    text = "Nodules (series 2, images 1, 20 and 40)."
    feet_first = grid(z0=-97.5, dz=2.5, n=40)
    head_first = VolumeGrid("v", FOR, (150.0, 150.0, 0.0), (1.5, 1.5, 2.5), (-1, 0, 0, 0, -1, 0, 0, 0, -1),
                            (40, 64, 64))
    for volume, slices in ((feet_first, [39, 20, 0]), (head_first, [0, 19, 39])):
        pairs, quarantine = mine_snippets("r", text, series, volume, SnippetsConfig())
        assert quarantine == [] and [(p.image_number, p.z_mm, p.slice_index) for p in pairs] == [
            (1, 0.0, slices[0]), (20, -47.5, slices[1]), (40, -97.5, slices[2])]
    # a series with a gap: the missing images are quarantined, not moved onto a neighbouring slice
    gapped = [replace(stack(2, 0.0, 2.5, 40), instance_z={n: (n - 1) * 2.5 for n in range(1, 41) if not 20 <= n <= 22})]
    pairs, quarantine = mine_snippets("r", "Nodule (series 2, images 19-23).", gapped, grid(z0=0.0, dz=2.5, n=40),
                                      SnippetsConfig())
    assert [(p.image_number, p.slice_index) for p in pairs] == [(19, 18), (23, 22)]
    assert [q.reason for q in quarantine] == [QuarantineReason.IMAGE_OUT_OF_RANGE] * 3
    assert "no image 20 (a gap in its InstanceNumbers 1..40)" in quarantine[0].message


def test_an_image_on_a_reformat_without_a_series_is_not_placed_in_the_axial_series() -> None:
    # "coronal image 45" is the 45th coronal plane: as image 45 of the study's one axial series it was a wrong slice
    series = [stack(2, -100.0, 2.5, 40)]
    text = ("Nodule (coronal image 45). Mass on sagittal images 30-31. Herd (Bild 20 der koronaren Rekonstruktion). "
            "Coronal images show no other lesion. Cyst (image 12). Nodus (coronale beeld 8).")
    refs = mine_image_references(text)
    assert [(r.image_numbers, r.on_reformat) for r in refs] == [
        ((45,), True), ((30, 31), True), ((20,), True), ((12,), False), ((8,), True)]
    pairs, quarantine = resolve_references(refs, series, grid(), SnippetsConfig(), report_id="r", text=text)
    assert [(p.series_number, p.image_number) for p in pairs] == [(2, 12)]
    assert [q.reason for q in quarantine] == [QuarantineReason.NON_AXIAL_SERIES] * 4
    assert "reformat" in quarantine[0].message
    # a plane word that names anatomy is no reformat (German "koronar" is coronary too)
    text = ("Koronarverkalkungen (Bild 15). Koronare Herzkrankheit (Bild 16). Thrombus in the superior sagittal sinus "
            "(image 17). Nodule along the oblique fissure (image 18). Coronary calcification (image 19).")
    assert [(r.image_numbers, r.on_reformat) for r in mine_image_references(text)] == [
        ((n,), False) for n in range(15, 20)]
    # a plane that begins the next image's reference places that image, not the one before it (image 45 was lost)
    text = "Nodule (axial image 45, coronal image 60). Herd (Bild 12 und koronare Bilder 30-31)."
    assert [(r.image_numbers, r.on_reformat) for r in mine_image_references(text)] == [
        ((45,), False), ((60,), True), ((12,), False), ((30, 31), True)]
    # an abbreviated plane right before the image: image 30 of the reformat was placed in the axial series
    text = "Nodule (sag image 30). Nodule (cor image 31). Cor: normal size (image 32). Nodule image 33, cor normal."
    assert [(r.image_numbers, r.on_reformat) for r in mine_image_references(text)] == [
        ((30,), True), ((31,), True), ((32,), False), ((33,), False)]
    # a plane in parentheses right before the image: image 80 of the coronal series was placed in the axial one
    assert [(r.image_numbers, r.on_reformat) for r in mine_image_references("Herd Serie 601 (koronar) Bild 80.")] == [
        ((80,), True)]
    # a reformat series named by its plane and number, "coronal 4": its image was placed in the axial series
    # ... or by an abbreviated plane with its stop, or a plane with a colon; a reformat, a rendering or a scout
    # without its plane
    text = ("Nodule (coronal 4, image 30). Nodule on sagittal 601 image 80. Nodule (axial 3, image 12). "
            "Herd (kor. Bild 81). Nodule (sag. image 31). Nodule (coronal: image 32). Nodule (reformats, image 33). "
            "Nodule (VR image 34). Nodule (oblique image 35). Nodule (scout image 2).")
    refs = mine_image_references(text)
    assert [(r.image_numbers, r.on_reformat) for r in refs] == [
        ((30,), True), ((80,), True), ((12,), False), ((81,), True), ((31,), True), ((32,), True), ((33,), True),
        ((34,), True), ((35,), True), ((2,), True)]
    pairs, quarantine = resolve_references(refs, series, grid(), SnippetsConfig(), report_id="r", text=text)
    assert [p.image_number for p in pairs] == [12]
    assert [q.reason for q in quarantine] == [QuarantineReason.NON_AXIAL_SERIES] * 9
    assert "scout" in quarantine[-1].message


def test_snippet_ids_are_unique_across_the_volumes_of_a_study() -> None:
    # volumes_per_study: all: the study's report is paired with each of its corpus volumes
    series = [stack(2, -100.0, 2.5, 40), stack(3, -100.0, 1.0, 100)]
    text = "Nodule (series 3, image 61)."
    refs = mine_image_references(text, language="en")
    pairs = [
        pair
        for volume in ("vol-a", "vol-b")
        for pair in resolve_references(refs, series, replace(grid(), volume_id=volume), SnippetsConfig(),
                                       report_id="r1", text=text)[0]
    ]
    assert [p.volume_id for p in pairs] == ["vol-a", "vol-b"]
    assert len({p.snippet_id for p in pairs}) == 2
    assert pairs[0].snippet_id == f"vol-a/r1@{text.index('series')}-{text.index(')')}#61"
    # ... and so are the quarantine's: image 140 lies in the taller volume only; each entry names its volume
    text = "Nodule (series 3, images 61 and 140)."
    refs = mine_image_references(text, language="en")
    short, tall = replace(grid(n=40), volume_id="vol-a"), replace(grid(n=60), volume_id="vol-b")
    outcomes = [resolve_references(refs, [stack(3, -100.0, 1.0, 200)], volume, SnippetsConfig(), report_id="r1",
                                   text=text)
                for volume in (short, tall, replace(short, volume_id="vol-c"))]
    assert [len(pairs) for pairs, _ in outcomes] == [1, 2, 1]
    span = f"{text.index('series')}-{text.index(')')}"
    assert [q.item_id for _, quarantine in outcomes for q in quarantine] == [f"vol-a/r1@{span}#140",
                                                                             f"vol-c/r1@{span}#140"]


def test_a_series_ingest_split_into_stacks_resolves_by_its_image_numbers() -> None:
    # one axial series of two acquisitions over the same range (inspiration, expiration), numbered
    # on: ingest makes them two stacks, but each image number names one image
    series = [stack(4, -100.0, 2.5, 40), replace(stack(4, -100.0, 2.5, 40, first_instance=41), instance_z={
        41 + k: -100.0 + k * 2.5 + 1.0 for k in range(40)})]
    text = "Air trapping (series 4, images 12 and 60)."
    pairs, quarantine = resolve_references(mine_image_references(text), series, grid(), SnippetsConfig(),
                                           report_id="r", text=text)
    assert quarantine == [] and [(p.image_number, p.z_mm) for p in pairs] == [(12, -72.5), (60, -51.5)]
    # an image number both stacks give, at different positions, cannot tell which is meant
    clash = [series[0], stack(4, -99.0, 2.5, 40)]
    pairs, quarantine = resolve_references(mine_image_references(text), clash, grid(), SnippetsConfig(),
                                           report_id="r", text=text)
    assert pairs == [] and [q.reason for q in quarantine] == [QuarantineReason.AMBIGUOUS_IMAGE,
                                                              QuarantineReason.IMAGE_OUT_OF_RANGE]
    # two series that share a number stay ambiguous
    other = [series[0], replace(series[1], series_uid="1.2.3.99")]
    _, quarantine = resolve_references(mine_image_references(text), other, grid(), SnippetsConfig(),
                                       report_id="r", text=text)
    assert [q.reason for q in quarantine] == [QuarantineReason.AMBIGUOUS_SERIES]
    assert "series number 4 names 2 series ['1.2.3.4', '1.2.3.99']" in quarantine[0].message
    # one series of an axial stack and a reformat saved into it (images 38-42): its axial images are placed,
    # where the whole series was ambiguous_series ("names 2 stacks ['1.2.3.4', '1.2.3.4']")
    planes = [series[0], stack(4, -50.0, 2.5, 5, first_instance=38, axial=False)]
    text = "Nodules (series 4, images 12, 39 and 41)."
    pairs, quarantine = resolve_references(mine_image_references(text), planes, grid(), SnippetsConfig(),
                                           report_id="r", text=text)
    assert [(p.image_number, p.z_mm) for p in pairs] == [(12, -72.5)]
    assert [(q.item_id[-3:], q.reason) for q in quarantine] == [
        ("#39", QuarantineReason.AMBIGUOUS_IMAGE), ("#41", QuarantineReason.NON_AXIAL_SERIES)]
    assert "image 41 of series 4 lies in another plane than its axial images" in quarantine[1].message
    # a series of reformats alone is no axial series; stacks of one series in two frames cannot be joined
    _, quarantine = resolve_references(mine_image_references(text), [replace(s, is_axial=False) for s in planes],
                                       grid(), SnippetsConfig(), report_id="r", text=text)
    assert [q.reason for q in quarantine] == [QuarantineReason.NON_AXIAL_SERIES]
    frames = [planes[0], replace(series[1], frame_of_reference_uid="9")]
    _, quarantine = resolve_references(mine_image_references(text), frames, grid(), SnippetsConfig(),
                                       report_id="r", text=text)
    assert [q.reason for q in quarantine] == [QuarantineReason.AMBIGUOUS_SERIES]
    assert quarantine[0].message.endswith("series 4 holds 2 stacks in different frames of reference")


def test_a_bare_image_in_the_one_axial_series_ingest_split_into_stacks_is_placed() -> None:
    # the study's one axial series is two stacks (two acquisitions, numbered on) and no primary series is
    # known (volumes_per_study 'all'): it was quarantined as ambiguous between "2 axial series [4, 4]"
    series = [stack(4, -100.0, 2.5, 20), stack(4, -50.0, 2.5, 20, first_instance=21),
              stack(4, -100.0, 2.5, 5, first_instance=101, axial=False)]
    text = "Nodule (image 12). Mass (image 30)."
    pairs, quarantine = resolve_references(mine_image_references(text), series, grid(), SnippetsConfig(),
                                           report_id="r", text=text)
    assert quarantine == [] and [(p.series_number, p.image_number, p.z_mm, p.slice_index) for p in pairs] == [
        (4, 12, -72.5, 11), (4, 30, -27.5, 29)]
    # two axial series are still ambiguous, each number named once
    _, quarantine = resolve_references(mine_image_references(text)[:1], [*series, stack(5, -100.0, 1.0, 60)], grid(),
                                       SnippetsConfig(), report_id="r", text=text)
    assert [q.reason for q in quarantine] == [QuarantineReason.AMBIGUOUS_SERIES]
    assert "2 axial series [4, 5]" in quarantine[0].message
    # a study whose series has no SeriesNumber (the TotalSegmentator example's) has no slice table: setting
    # snippets.primary_series_number, which the message advised, cannot name it
    _, quarantine = resolve_references(mine_image_references(text)[:1], [series[2]], grid(), SnippetsConfig(),
                                       report_id="r", text=text)
    assert [q.reason for q in quarantine] == [QuarantineReason.AMBIGUOUS_SERIES]
    assert quarantine[0].message.endswith("the study has no axial series with a SeriesNumber to point into")


def test_bins_are_exact_at_their_edges() -> None:
    # bin = floor(slice_index * spacing_z / bin_mm): in floats 3 * 1.2 / 3.6 is 0.999..., which put every
    # third slice of a 1.2 mm volume into the bin below (bins of 2 and 4 slices instead of 3)
    series = [stack(2, 0.0, 1.2, 30)]
    text = "Nodules (series 2, images 1-30)."
    pairs, _ = resolve_references(mine_image_references(text), series, grid(z0=0.0, dz=1.2, n=30),
                                  SnippetsConfig(bin_mm=3.6), report_id="r", text=text)
    assert [p.bin_index for p in pairs] == [k // 3 for k in range(30)]
    # a 0.7 mm volume's slice 360 begins bin 21 of 12 mm (252 mm)
    pairs, _ = resolve_references(mine_image_references("Nodule (series 2, image 361)."), [stack(2, 0.0, 0.7, 400)],
                                  grid(z0=0.0, dz=0.7, n=400), SnippetsConfig(), report_id="r", text="")
    assert (pairs[0].slice_index, pairs[0].bin_index) == (360, 21)


def test_unresolvable_references_get_their_reason() -> None:
    series = [
        stack(2, -100.0, 2.5, 40),
        stack(3, -100.0, 1.0, 100),
        stack(6, -100.0, 2.5, 40, frame="1.2.999"),
        stack(7, 200.0, 2.5, 10),
        stack(8, -100.0, 2.5, 4),
        stack(8, -90.0, 2.5, 4),
    ]
    g = grid()
    text = (
        "A (series 5, image 10). B (series 2, image 999). C (series 6, image 3). D (image 12). "
        "E (series 7, image 2). F (series 8, image 1). G (series 2, images 39-41)."
    )
    refs = mine_image_references(text, language="en")
    pairs, quarantine = resolve_references(refs, series, g, SnippetsConfig(), report_id="r9", text=text,
                                           source="reports/ris.csv")
    def at(expression: str, image: int | None = None) -> str:
        start = text.index(expression)
        return f"vol1/r9@{start}-{start + len(expression)}" + ("" if image is None else f"#{image}")

    assert [(q.item_id, q.reason) for q in quarantine] == [
        (at("series 5, image 10"), QuarantineReason.SERIES_ABSENT),
        (at("series 2, image 999", 999), QuarantineReason.IMAGE_OUT_OF_RANGE),
        (at("series 6, image 3"), QuarantineReason.OTHER_FRAME_OF_REFERENCE),
        (at("image 12"), QuarantineReason.AMBIGUOUS_SERIES),
        (at("series 7, image 2", 2), QuarantineReason.OUT_OF_VOLUME),
        (at("series 8, image 1", 1), QuarantineReason.AMBIGUOUS_IMAGE),  # one series, two stacks, two images 1
        (at("series 2, images 39-41", 41), QuarantineReason.IMAGE_OUT_OF_RANGE),
    ]
    assert all(q.stage == "snippets" and q.path == "reports/ris.csv" and "r9" in q.message for q in quarantine)
    assert "series with stacks: [2, 3, 6, 7, 8]" in quarantine[0].message
    # the range keeps its resolvable images 39 and 40 only
    assert [(p.image_number, p.slice_index) for p in pairs] == [(39, 38), (40, 39)]
    # a configured primary series resolves the bare image; so does a study with one axial series
    pairs, quarantine = resolve_references(refs[3:4], series, g, SnippetsConfig(primary_series_number=2),
                                           report_id="r9", text=text)
    assert quarantine == [] and pairs[0].series_number == 2 and pairs[0].slice_index == 11
    only = [stack(2, -100.0, 2.5, 40), stack(3, -100.0, 1.0, 100, axial=False)]
    pairs, quarantine = resolve_references(refs[3:4], only, g, SnippetsConfig(), report_id="r9", text=text)
    assert quarantine == [] and pairs[0].series_number == 2
    pairs, quarantine = resolve_references(refs[3:4], series, g, SnippetsConfig(primary_series_number=11),
                                           report_id="r9", text=text)
    assert pairs == [] and quarantine[0].reason is QuarantineReason.SERIES_ABSENT
    # the configured series is a site's rule: it wins over the series of the study's corpus volume
    pairs, quarantine = resolve_references(refs[3:4], series, g, SnippetsConfig(primary_series_number=3),
                                           report_id="r9", text=text, primary_series_number=2)
    assert quarantine == [] and (pairs[0].series_number, pairs[0].z_mm) == (3, -89.0)
    pairs, quarantine = resolve_references(refs[3:4], series, g, SnippetsConfig(),
                                           report_id="r9", text=text, primary_series_number=2)
    assert quarantine == [] and (pairs[0].series_number, pairs[0].z_mm) == (2, -72.5)


# --------------------------------------------------------------------------------------------
# Synthetic ground truth: reports rendered by ctcorpus.synth.report_text with exact references
# --------------------------------------------------------------------------------------------
def synthetic_study(rng: np.random.Generator, index: int, language: str):
    """One study: a 2.5 mm primary axial series 2 and a 1 mm recon series 3, findings, a report."""
    z0 = float(rng.uniform(-300.0, -100.0))
    n_primary = int(rng.integers(24, 60))
    primary = stack(2, z0, 2.5, n_primary, first_instance=int(rng.integers(1, 3)))
    recon = stack(3, z0, 1.0, int(n_primary * 2.5), first_instance=1)
    tables = {2: primary, 3: recon}
    findings = []
    labels = list(LABEL_ANATOMY)
    for label in rng.choice(labels, size=int(rng.integers(1, 4)), replace=False):
        series = tables[2 if rng.random() < 0.6 else 3]
        instance = int(rng.choice(sorted(series.instance_z)[3:-3]))
        findings.append(FindingTruth(str(label), LABEL_ANATOMY[str(label)].value, "", (0.0, 0.0, 0.0), 5.0,
                                     series.series_number, instance, series.instance_z[instance]))
    report = render_report(
        rng, accession_number=f"A{index}", patient_id=f"P{index}", patient_name="Doe^Jane",
        birth_date="19600101", study_date="20240105", language=language, findings=findings,
        primary_series_number=2, secondary_series_number=3, phi=bool(rng.random() < 0.5), study_uid=f"1.2.{index}",
        z_of_instance=lambda s, i: tables[s].instance_z[i],
    )
    flip = rng.random() < 0.5
    top = z0 + (n_primary - 1) * 2.5
    volume = VolumeGrid(
        f"vol{index}", FOR, (-150.0, -150.0, top if flip else z0), (1.5, 1.5, 1.5),
        (1, 0, 0, 0, 1, 0, 0, 0, -1) if flip else IDENTITY, (int((n_primary - 1) * 2.5 / 1.5) + 1, 32, 32),
    )
    return report, [primary, recon], volume


def score(found, truth) -> tuple[int, int, int]:
    """(true positives, found, truth): a match overlaps a true reference with equal series and images. An
    image on a reformat ("(coronal image 45)", no truth) is not found: resolution quarantines it."""
    found = [ref for ref in found if not ref.on_reformat]
    tp = 0
    for ref in found:
        if any(ref.start < t.end and t.start < ref.end and ref.series_number == t.series_number
               and ref.image_numbers == t.image_numbers for t in truth):
            tp += 1
    return tp, len(found), len(truth)


def test_synthetic_ground_truth_precision_recall_and_z() -> None:
    rng = np.random.default_rng(20240105)
    config = SnippetsConfig(primary_series_number=2)
    tp = n_found = n_truth = 0
    z_err_over_half = 0.0
    placement_err_over_half_voxel = 0.0
    n_pairs = 0
    for index in range(160):
        report, series, volume = synthetic_study(rng, index, "en" if index % 2 else "de")
        sentences = [SentenceContext(s.start, s.end) for s in report.sentences]
        refs = mine_image_references(report.text, [(s.start, s.end) for s in sentences],
                                     language=None if index % 3 == 0 else report.language)
        counts = score(refs, report.references)
        tp, n_found, n_truth = tp + counts[0], n_found + counts[1], n_truth + counts[2]
        pairs, quarantine = resolve_references(refs, series, volume, config, report_id=report.accession_number,
                                               text=report.text, sentences=sentences)
        on_reformat = {(ref.start, ref.end) for ref in refs if ref.on_reformat}
        assert all(q.reason is QuarantineReason.NON_AXIAL_SERIES and entry_span(q) in on_reformat for q in quarantine)
        thickness = {s.series_number: s.slice_thickness_mm for s in series}
        for pair in pairs:
            truth = next(t for t in report.references if t.start < pair.reference_end and pair.reference_start < t.end)
            true_z = truth.z_mm[truth.image_numbers.index(pair.image_number)]
            z_err_over_half = max(z_err_over_half, abs(pair.z_mm - true_z) / (thickness[pair.series_number] / 2))
            centre = volume.origin_mm[2] + volume.direction[8] * volume.spacing_mm[2] * pair.slice_index
            placement_err_over_half_voxel = max(placement_err_over_half_voxel,
                                                abs(centre - true_z) / (volume.spacing_mm[2] / 2))
            n_pairs += 1
    precision, recall = tp / n_found, tp / n_truth
    assert n_truth > 250 and n_pairs >= n_truth
    assert precision >= 0.99, precision
    assert recall >= 0.98, recall
    assert z_err_over_half <= 1.0
    assert placement_err_over_half_voxel <= 1.0 + 1e-9


@pytest.fixture(scope="module")
def export_truth(tmp_path_factory: pytest.TempPathFactory):
    export = pytest.importorskip("ctcorpus.synth.export")
    return export.generate_export(tmp_path_factory.mktemp("export"), patients=2, seed=2, language="mixed")  # seed with a bare "(image N)" reference


def entry_span(entry) -> tuple[int, int]:
    """Char span of the reference a quarantine entry names (item id '<volume>/<report>@<start>-<end>[#image]')."""
    start, end = entry.item_id.rsplit("@", 1)[1].split("#")[0].split("-")
    return int(start), int(end)


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def slices_from_truth(series: SeriesTruth) -> SeriesSlices:
    """The slice table ingestion would build, straight from the ground truth."""
    return SeriesSlices(
        series_number=series.series_number,
        series_uid=series.series_uid,
        frame_of_reference_uid=series.frame_of_reference_uid,
        slice_thickness_mm=series.slice_thickness_mm,
        instance_z=dict(zip(series.instance_numbers, series.z_mm)),
        is_axial=series.kind in ("axial", "recon"),
    )


@pytest.mark.slow
def test_generated_export_references_resolve_to_true_z(export_truth) -> None:
    """On a generated export: every written reference found, resolved to its true z, placed right."""
    config = SnippetsConfig()
    tp = n_found = n_truth = 0
    for report in export_truth.reports:
        stacks = [s for s in export_truth.series if s.study_uid == report.study_uid and s.kind != "defect"]
        if not stacks:
            continue
        primary = next(s for s in stacks if s.kind == "axial")
        # corpus volume: the primary's grid resampled to 1.5 mm along z
        extent = (primary.n_slices - 1) * primary.spacing_mm[2]
        volume = VolumeGrid(
            f"vol-{report.accession_number}", primary.frame_of_reference_uid, primary.origin_mm,
            (primary.spacing_mm[0], primary.spacing_mm[1], 1.5), primary.direction,
            (int(extent / 1.5) + 1, primary.rows, primary.columns),
        )
        sentences = [SentenceContext(s.start, s.end, s.anatomies,
                                     tuple(k for k, v in s.labels.items() if v == "positive"))
                     for s in report.sentences]
        refs = mine_image_references(report.text, [(s.start, s.end) for s in sentences])
        counts = score(refs, report.references)
        tp, n_found, n_truth = tp + counts[0], n_found + counts[1], n_truth + counts[2]
        pairs, quarantine = resolve_references(
            refs, [slices_from_truth(s) for s in stacks], volume, config, report_id=report.accession_number,
            text=report.text, sentences=sentences, primary_series_number=primary.series_number,
        )
        for truth in report.references:  # each unresolvable reference with its reason, no other
            reasons = {q.reason.value for q in quarantine if overlaps(entry_span(q), (truth.start, truth.end))}
            assert reasons == ({truth.expected_reason} if truth.expected_reason else set()), truth.text
        thickness = {s.series_number: s.slice_thickness_mm for s in stacks}
        for pair in pairs:
            truth = next(t for t in report.references if t.start < pair.reference_end and pair.reference_start < t.end)
            true_z = truth.z_mm[truth.image_numbers.index(pair.image_number)]
            assert abs(pair.z_mm - true_z) <= thickness[pair.series_number] / 2
            centre = volume.origin_mm[2] + 1.5 * pair.slice_index
            assert abs(centre - true_z) <= 0.75 + 1e-9
            assert not truth.label or truth.label in pair.labels
    assert n_truth >= 5
    assert tp / n_found >= 0.99 and tp / n_truth >= 0.98


@pytest.mark.slow
def test_generated_export_broken_study_context_gives_each_reason(export_truth) -> None:
    """Take slice tables away or change them, and each written reference gets the reason that follows."""
    checked: dict[QuarantineReason, int] = {}
    for report in export_truth.reports:
        stacks = {s.kind: slices_from_truth(s) for s in export_truth.series
                  if s.study_uid == report.study_uid and s.kind in ("axial", "recon")}
        if not report.references or len(stacks) != 2:
            continue
        primary, recon = stacks["axial"], stacks["recon"]
        z_values = sorted(primary.instance_z.values())
        volume = VolumeGrid("v", FOR, (0.0, 0.0, z_values[0]), (3.0, 3.0, 5.0), IDENTITY, (len(z_values), 8, 8))
        primary, recon = (SeriesSlices(s.series_number, s.series_uid, FOR, s.slice_thickness_mm, s.instance_z)
                          for s in (primary, recon))
        # an image on a reformat is quarantined as such before its series is picked
        refs = [ref for ref in mine_image_references(report.text) if not ref.on_reformat]
        low_half = {n: z for n, z in primary.instance_z.items() if z < z_values[len(z_values) // 2]}
        cases = [  # (slice tables, volume, primary, reason, which references get it)
            ([primary], volume, primary.series_number, QuarantineReason.SERIES_ABSENT,
             lambda r: r.series_number == recon.series_number),
            ([primary, SeriesSlices(recon.series_number, recon.series_uid, "9.9", 1.0, recon.instance_z)], volume,
             primary.series_number, QuarantineReason.OTHER_FRAME_OF_REFERENCE,
             lambda r: r.series_number == recon.series_number),
            ([primary, recon], volume, None, QuarantineReason.AMBIGUOUS_SERIES, lambda r: r.series_number is None),
            ([SeriesSlices(primary.series_number, primary.series_uid, FOR, 5.0, low_half), recon], volume,
             primary.series_number, QuarantineReason.IMAGE_OUT_OF_RANGE,
             lambda r: r.series_number != recon.series_number
             and any(n not in low_half for n in r.image_numbers)),
            ([primary, recon], VolumeGrid("v", FOR, (0.0, 0.0, z_values[0]), (3.0, 3.0, 5.0), IDENTITY,
                                          (len(z_values) // 2, 8, 8)),
             primary.series_number, QuarantineReason.OUT_OF_VOLUME,
             lambda r: any((recon if r.series_number == recon.series_number else primary).instance_z[n]
                           > z_values[len(z_values) // 2 - 1] + 2.5 for n in r.image_numbers)),
        ]
        for tables, grid_, primary_number, reason, affected in cases:
            _, quarantine = resolve_references(refs, tables, grid_, SnippetsConfig(), report_id="r",
                                               text=report.text, primary_series_number=primary_number)
            hit = {entry_span(q) for q in quarantine if q.reason is reason}
            assert {r for r in range(len(refs)) if (refs[r].start, refs[r].end) in hit} == {
                r for r in range(len(refs)) if affected(refs[r])
            }, reason
            checked[reason] = checked.get(reason, 0) + len(hit)
    assert all(checked.get(reason, 0) > 0 for reason in (
        QuarantineReason.SERIES_ABSENT, QuarantineReason.OTHER_FRAME_OF_REFERENCE,
        QuarantineReason.IMAGE_OUT_OF_RANGE, QuarantineReason.OUT_OF_VOLUME, QuarantineReason.AMBIGUOUS_SERIES)), checked


# --------------------------------------------------------------------------------------------
# Table and config
# --------------------------------------------------------------------------------------------
def test_snippets_table_matches_schema_and_carries_provenance() -> None:
    series = [stack(2, 0.0, 3.0, 20)]
    text = "Nodule (series 2, image 5). Mass (se 2 im 7)."
    pairs, _ = mine_snippets("r1", text, series, grid(z0=0.0, dz=3.0, n=20), SnippetsConfig())
    table = snippets_table(pairs, {"r1": "ab" * 32})
    check_table("snippets", table)
    schema_columns = load_schema("snippets").columns
    assert schema_columns[: len(SnippetPair.__slots__)] == list(SnippetPair.__slots__)
    assert table.num_rows == 2
    assert table.column("producer").to_pylist() == [PRODUCER] * 2
    assert table.column("source_sha256").to_pylist() == ["ab" * 32] * 2
    assert table.column("slice_index").to_pylist() == [4, 6]
    with pytest.raises(SnippetError, match="no source sha256"):
        snippets_table(pairs, {"other": "x"})


def test_config_validation_names_the_field() -> None:
    assert SnippetsConfig().bin_mm == 12.0
    with pytest.raises(ConfigError, match="snippets.languages"):
        config_from_dict({"snippets": {"languages": ["fr"]}})
    with pytest.raises(ConfigError, match="snippets.bin_mm"):
        config_from_dict({"snippets": {"bin_mm": 0}})


# --------------------------------------------------------------------------------------------
# Real reports (DRAGON samples, Dutch originals + English translations)
# --------------------------------------------------------------------------------------------
RECIST = [(8, (34,)), (3, (38,)), (3, (28,)), (8, (104,)), (4, (168,)), (4, (172,))]
DRAGON_EXPECTED: dict[str, list[tuple[int | None, tuple[int, ...]]]] = {
    "Task005_recist_timeline_clf.md": RECIST,
    "Task016_recist_lesion_size_presence_clf.md": RECIST,
    "Task024_recist_lesion_size_reg.md": RECIST,
    "Task007_nodule_diameter_presence_clf.md": [(5, (456,))],
    "Task023_nodule_diameter_reg.md": [(5, (456,))],
    "Task026_medical_terminology_ner.md": [(None, (75, 90))],
}


@pytest.mark.skipif(not DRAGON.is_dir(), reason="../shared/data/reports_dragon_samples_nl_en is absent")
@pytest.mark.parametrize("language", ["dutch", "english"])
def test_real_reports_every_reference_found_and_nothing_else(language: str) -> None:
    files = sorted((DRAGON / language).glob("*.md"))
    assert len(files) == 28
    for path in files:
        text = path.read_text(encoding="utf-8")
        found = [(r.series_number, r.image_numbers) for r in mine_image_references(text)]
        assert found == DRAGON_EXPECTED.get(path.name, []), path.name


# --------------------------------------------------------------------------------------------
# Slice tables of ingested stacks
# --------------------------------------------------------------------------------------------


def _stacks_of(root: Path, series: dict[int, list[SlicePlacement]], rows: int = 64) -> dict[int | None, Stack]:
    """Write one 2 mm-pixel series per number and plan their stacks, by series number."""
    for number, placements in series.items():
        header = SeriesHeader("P1", "Doe^John", "19500101", "M", uid("S", "study"), "20240101", "120000", "A1",
                              uid("S", number), number, "CHEST", uid("S", "for"), "B30f", "X", "Y", 2.0, (2.0, 2.0))
        write_series(header, [np.zeros((rows, rows), np.int16)] * len(placements), placements,
                     [root / str(number) / f"IM{k:03d}" for k in range(len(placements))])
    config = IngestConfig(pseudonym_key="k")
    return {s.first.series_number: s for s in plan_stacks(index_export(root, config), config)}


def test_slice_tables_place_an_image_by_its_centre_and_refuse_reformats(tmp_path: Path) -> None:
    # ImagePositionPatient is the first pixel: in a 20-degree tilted image of 64 rows of 2 mm the
    # centre lies 21.5 mm of z higher, and a coronal reformat's images all start at one z.
    tilt = math.radians(20)
    half = 63 / 2 * 2.0
    stacks = _stacks_of(tmp_path, {
        2: [SlicePlacement(k + 1, (-63.0, -63.0, 2.0 * (k + 1))) for k in range(20)],
        4: [SlicePlacement(k + 1, (-63.0, round(-half * math.cos(tilt), 6), round(2.0 * (k + 1) - half * math.sin(tilt), 6)),
                           (1, 0, 0, 0, round(math.cos(tilt), 6), round(math.sin(tilt), 6))) for k in range(20)],
        5: [SlicePlacement(k + 1, (-63.0, -40.0 + 2.0 * k, 50.0), (1, 0, 0, 0, 0, -1)) for k in range(20)],
    })
    tables = [stack_slices(stacks[n], series_uid=f"s{n}", frame_of_reference_uid=FOR) for n in (2, 4, 5)]
    axial, tilted, coronal = tables
    assert axial is not None and tilted is not None and coronal is not None
    assert axial.instance_z[15] == pytest.approx(30.0) and tilted.instance_z[15] == pytest.approx(30.0, abs=1e-3)
    assert (axial.is_axial, tilted.is_axial, coronal.is_axial) == (True, True, False)
    grid = VolumeGrid("v", FOR, (0.0, 0.0, 2.0), (2.0, 2.0, 2.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), (20, 64, 64))
    pairs, rejected = mine_snippets("r", "Nodule (series 2, image 15), (series 4, image 15) and (series 5, image 5).",
                                    tables, grid, SnippetsConfig())
    assert [(p.series_number, p.slice_index) for p in pairs] == [(2, 14), (4, 14)]
    assert [q.reason for q in rejected] == [QuarantineReason.NON_AXIAL_SERIES]


def test_an_image_number_images_at_two_positions_share_is_quarantined(tmp_path: Path) -> None:
    # one stack numbered 1..10 twice: "image 5" may be either of two slices 20 mm apart
    stacks = _stacks_of(tmp_path, {2: [SlicePlacement(k % 10 + 1, (-63.0, -63.0, 2.0 * k)) for k in range(20)]})
    table = stack_slices(stacks[2], series_uid="s2", frame_of_reference_uid=FOR)
    assert table is not None and table.repeated_images == frozenset(range(1, 11)) and not table.instance_z
    grid = VolumeGrid("v", FOR, (0.0, 0.0, 0.0), (2.0, 2.0, 2.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), (20, 64, 64))
    pairs, rejected = mine_snippets("r", "Nodule (series 2, image 5).", [table], grid, SnippetsConfig())
    assert not pairs and [q.reason for q in rejected] == [QuarantineReason.AMBIGUOUS_IMAGE]


PHILIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "dcm_qa_ct_philips_study_with_localizer"


@pytest.mark.skipif(not PHILIPS.is_dir(), reason="../shared/data/dcm_qa_ct_philips_study_with_localizer is absent")
@pytest.mark.parametrize("orientation", ["LPS", "RAS"])
def test_real_study_images_land_on_the_slice_of_their_centre_and_its_localizer_is_named(orientation: str) -> None:
    # a Philips study: localizer series 100 (discovery leaves it out), axial series 201 of 28 images 5 mm apart,
    # resampled to 0.7 mm (RAS flips x and y): each image lands on the corpus slice SimpleITK puts its centre in
    from ctcorpus.ingest import ingest_stack, resampled_image
    from ctcorpus.ingest.geometry import slice_centre
    from ctcorpus.records import QuarantineLog

    config = IngestConfig(pseudonym_key="k", orientation=orientation, target_spacing_mm=(2.0, 2.0, 0.7))
    (axial,) = [s for s in plan_stacks(index_export(PHILIPS / "In", config, on_error=QuarantineLog()), config)
                if not s.rejected]
    volume = ingest_stack(axial, config).volume
    assert volume is not None and axial.first.series_number == 201
    image = resampled_image(volume)
    grid = VolumeGrid("v", FOR, volume.origin, volume.spacing, volume.direction, volume.array.shape)
    table = stack_slices(axial, series_uid="s201", frame_of_reference_uid=FOR)
    assert table is not None and sorted(table.instance_z) == list(range(1, 29))
    text = " ".join(f"Finding (series 201, image {n})." for n in range(1, 29)) + " Scout (series 100, image 1)."
    pairs, quarantine = mine_snippets("r", text, [table], grid, SnippetsConfig())
    expected = {r.instance_number: math.floor(image.TransformPhysicalPointToContinuousIndex(slice_centre(r))[2] + 0.5)
                for r in axial.instances}
    assert {p.image_number: p.slice_index for p in pairs} == expected
    assert [q.reason for q in quarantine] == [QuarantineReason.SERIES_ABSENT]
    # the localizer is in the study: "not in the study" sent the auditor looking for a missing series
    assert "series 100 has no stack of CT images in the study (a localizer" in quarantine[0].message
    assert "series with stacks: [201]" in quarantine[0].message


@pytest.mark.parametrize(("degrees", "axial"), [(0.0, True), (30.0, True), (-30.0, True), (50.0, False), (90.0, False)])
def test_a_stack_tilted_as_far_as_a_gantry_tilts_is_axial(tmp_path: Path, degrees: float, axial: bool) -> None:
    # gantries tilt up to 30 degrees (head CTs along the orbitomeatal line), and ingest untilts such a stack into a
    # corpus volume: at 0.9 (25.8 degrees) its references were quarantined as a coronal or sagittal reformat's
    tilt = math.radians(degrees)
    half = 63 / 2 * 2.0
    stacks = _stacks_of(tmp_path, {2: [
        SlicePlacement(k + 1, (-63.0, round(-half * math.cos(tilt), 6), round(3.0 * k - half * math.sin(tilt), 6)),
                       (1, 0, 0, 0, round(math.cos(tilt), 6), round(math.sin(tilt), 6))) for k in range(12)]})
    table = stack_slices(stacks[2], series_uid="s2", frame_of_reference_uid=FOR)
    assert table is not None and table.is_axial is axial
    grid = VolumeGrid("v", FOR, (0.0, 0.0, 0.0), (2.0, 2.0, 3.0), IDENTITY, (12, 64, 64))
    pairs, rejected = mine_snippets("r", "Nodule (series 2, image 5).", [table], grid, SnippetsConfig())
    if axial:
        assert [(p.z_mm, p.slice_index) for p in pairs] == [(pytest.approx(12.0, abs=1e-3), 4)] and not rejected
    else:
        assert not pairs and [q.reason for q in rejected] == [QuarantineReason.NON_AXIAL_SERIES]


def test_a_bare_image_number_names_the_primary_series_by_its_uid_where_another_series_shares_its_number() -> None:
    # every bare reference was quarantined as ambiguous_series: the resolver was given the volume's
    # SeriesNumber alone, which another series of the study (a second scanner's, a re-sent one) also had
    own = SeriesSlices(2, "ser-own", "for-1", 3.0, {45: 9.0})
    other = SeriesSlices(2, "ser-other", "for-1", 3.0, {45: 21.0})
    grid = VolumeGrid("v1", "for-1", (0.0, 0.0, 0.0), (1.0, 1.0, 3.0), IDENTITY, (10, 4, 4))
    text = "Nodule (image 45). Cyst (series 2, image 45)."
    sentences = [SentenceContext(0, 18, (), ()), SentenceContext(19, len(text), (), ())]

    def mined(config: SnippetsConfig, uid: str | None) -> tuple[list[SnippetPair], list[str]]:
        pairs, entries = mine_snippets("r1", text, [other, own], grid, config, sentences=sentences,
                                       primary_series_number=2, primary_series_uid=uid)
        return pairs, [e.reason.value for e in entries]

    pairs, reasons = mined(SnippetsConfig(), "ser-own")
    assert [(q.reference_text, q.series_uid, q.slice_index) for q in pairs] == [("image 45", "ser-own", 3)]
    assert reasons == ["ambiguous_series"]  # a stated series number that two series carry stays ambiguous
    assert mined(SnippetsConfig(), None) == ([], ["ambiguous_series", "ambiguous_series"])  # by number alone
    # a site's primary_series_number is a number for every study: no volume's UID narrows it
    assert mined(SnippetsConfig(primary_series_number=2), "ser-own") == ([], ["ambiguous_series", "ambiguous_series"])


def test_a_renumbered_resent_copy_of_a_slice_names_its_position(tmp_path: Path) -> None:
    # images 1..10 re-sent as 101..110 at the same positions: ingest keeps one of each pair, and "image 105"
    # (the number the copy shows in PACS) was quarantined as out of range, though its slice is known
    placements = [SlicePlacement(k + 1, (-63.0, -63.0, 2.0 * k)) for k in range(10)]
    resent = [SlicePlacement(k + 101, (-63.0, -63.0, 2.0 * k)) for k in range(10)]
    moved = [SlicePlacement(5, (-63.0, -63.0, 18.0))]  # a copy numbered as another position's image: ambiguous
    stacks = _stacks_of(tmp_path, {2: placements + resent, 3: placements + moved})
    assert len(stacks[2].duplicates) == 10 and len(stacks[3].duplicates) == 1
    table = stack_slices(stacks[2], series_uid="s2", frame_of_reference_uid=FOR)
    assert table is not None and table.instance_z[105] == table.instance_z[5] == pytest.approx(8.0)
    grid = VolumeGrid("v", FOR, (0.0, 0.0, 0.0), (2.0, 2.0, 2.0), IDENTITY, (10, 64, 64))
    pairs, rejected = mine_snippets("r", "Nodule (series 2, image 105).", [table], grid, SnippetsConfig())
    assert [(p.image_number, p.slice_index) for p in pairs] == [(105, 4)] and not rejected
    other = stack_slices(stacks[3], series_uid="s3", frame_of_reference_uid=FOR)
    assert other is not None and other.repeated_images == frozenset({5}) and 5 not in other.instance_z
