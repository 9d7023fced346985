"""English and German vocabularies of the rules: anatomy terms, label synonyms, ConText triggers, headings.

Kept as data (not code) so the config can extend them and tests can read them. Anatomy regions and
labels come from :mod:`ctcorpus.taxonomy`; nothing here re-declares them.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import product
from types import MappingProxyType

from ctcorpus.taxonomy import Anatomy

__all__ = [
    "ABBREVIATIONS",
    "ANATOMY_STEMS",
    "ANATOMY_TERMS",
    "ARTERIES_NAMED_FIRST",
    "CALCIFICATION_STEMS",
    "CLAUSE_ARTICLES",
    "CLAUSE_VERBS",
    "DEPOSIT_NOUNS",
    "DEPOSIT_VERBS",
    "HEADINGS",
    "HEDGE_COMPOUNDS",
    "JOINT_MENTIONS",
    "LABEL_SYNONYMS",
    "LARGEST_OF_SEVERAL",
    "LIST_COORDINATORS",
    "LIST_DISJUNCTIONS",
    "LIST_ITEM_ASSERTIONS",
    "LIST_ITEM_DEGREES",
    "LIST_ITEM_PLACES",
    "LIST_ITEM_PREDICATES",
    "LIST_ITEM_QUALIFIERS",
    "LYMPH_NODES",
    "NEGATION_POST",
    "NEGATION_PRE",
    "NORMAL_STATEMENTS",
    "NOT_LABELS",
    "PSEUDO_TRIGGERS",
    "SCOPE_TERMINATORS",
    "SECTION_OF_HEADING",
    "SIDES",
    "SIZE_BELOW",
    "UNCERTAIN_POST",
    "UNCERTAIN_POST_LAST",
    "UNCERTAIN_PRE",
    "UNCERTAIN_STATEMENTS",
    "UNSIDED_LABELS",
]

_A = Anatomy

#: Anatomy phrases matched on lowercased tokens (spaCy PhraseMatcher, attr LOWER).
ANATOMY_TERMS: Mapping[Anatomy, tuple[str, ...]] = MappingProxyType(
    {
        _A.LUNGS: (
            "lung", "lungs", "pulmonary", "lobe", "lobes", "upper lobe", "lower lobe", "middle lobe", "lingula",
            "lingular", "parenchyma", "lunge", "lungen", "pulmonal", "pulmonaler", "pulmonale", "pulmonalen",
            "oberlappen", "unterlappen", "mittellappen", "lungenparenchym", "apex", "apices", "basal segments",
            "lungenspitze", "lungenspitzen", "lungenoberlappen", "lungenunterlappen", "perihilar", "bibasilar",
        ),
        _A.AIRWAYS: (
            "trachea", "tracheal", "tracheobronchial", "bronchi", "bronchus", "bronchial", "main bronchi", "airway",
            "airways", "peribronchial", "bronchien", "hauptbronchien", "hauptbronchus", "atemwege",
            "bronchiale", "peribronchiale", "peribronchialen", "luftröhre", "carina",
        ),
        _A.PLEURA: (
            "pleura", "pleural", "pneumothorax", "pleuraerguss", "pleuraergüsse", "pleuraergusses", "pleurale",
            "pleuralen", "costophrenic", "pleuraverdickung",
        ),
        _A.MEDIASTINUM: (
            "mediastinum", "mediastinal", "lymph node", "lymph nodes", "hilar", "hilum", "hila", "lymphknoten",
            "mediastinale", "mediastinalen", "mediastinaler", "hiläre", "hilären", "hilär", "subcarinal",
            "paratracheal",
        ),
        _A.HEART: (
            "heart", "cardiac", "pericardium", "pericardial", "atrium", "ventricle", "coronary", "herz",
            "herzens", "perikard", "perikarderguss", "kardial", "vorhof", "ventrikel", "koronare",
            "koronararterien", "cardiomediastinal", "left ventricle", "right ventricle",
        ),
        _A.AORTA: (
            "aorta", "aortic", "aortic arch", "great vessels", "vena cava", "cava", "pulmonary artery",
            "pulmonary arteries", "subclavian", "brachiocephalic", "aortenbogen", "aortal", "hohlvene",
            "truncus", "arterial", "arterielle", "pulmonalarterie", "pulmonalarterien", "aortensklerose",
        ),
        _A.ESOPHAGUS: ("esophagus", "esophageal", "oesophagus", "ösophagus", "hiatal", "hiatus", "hiatushernie"),
        _A.THYROID: ("thyroid", "thyroid gland", "schilddrüse", "schilddrüsen", "struma"),
        _A.CHEST_WALL: (
            "chest wall", "breast", "breasts", "axilla", "axillary", "thoraxwand", "brustwand", "mamma",
            "mammae", "axillär", "axillären", "soft tissues", "weichteile",
        ),
        _A.BONES: (
            "bone", "bones", "osseous", "spine", "thoracic spine", "vertebra", "vertebrae", "vertebral", "rib",
            "ribs", "sternum", "sternal", "sternotomy", "clavicle", "scapula", "skeleton", "ossär", "ossäre",
            "ossären", "knöchern", "knöcherne", "knöchernen", "wirbelsäule", "brustwirbelsäule", "bws", "lws",
            "wirbelkörper", "rippe", "rippen", "sternotomie", "skelett", "skelettsystem",
        ),
        _A.ABDOMEN: (
            "liver", "spleen", "kidney", "kidneys", "adrenal", "adrenals", "adrenal glands", "upper abdomen",
            "gallbladder", "pancreas", "stomach", "leber", "milz", "niere", "nieren", "nebenniere",
            "nebennieren", "oberbauch", "oberbauchorgane", "gallenblase", "pankreas", "magen", "hepatic",
            "renal",
        ),
    }
)

#: German compound stems: a word starting with one names the region ("Lungenemphysem", "Herzschrittmacher").
ANATOMY_STEMS: Mapping[Anatomy, tuple[str, ...]] = MappingProxyType(
    {
        _A.LUNGS: ("lungen", "unterlappen", "oberlappen", "mittellappen"),
        _A.AIRWAYS: ("bronch", "trache"),
        _A.PLEURA: ("pleura",),
        _A.MEDIASTINUM: ("lymphknoten", "mediastin"),
        # "koronar" alone is the coronal plane as German reports often write it ("koronar Bild 21", "koronar
        # rekonstruiert"): only its compounds name the heart ("Koronararterien", "Koronarsklerose")
        _A.HEART: ("herz", "perikard", "koronara", "koronarg", "koronari", "koronark", "koronars", "koronarv"),
        _A.AORTA: ("aorte", "aorto"),
        _A.ESOPHAGUS: ("ösophag", "oesophag", "hiatus"),
        _A.THYROID: ("schilddrüs",),
        _A.BONES: ("wirbel", "rippen", "brustwirbel"),
        _A.ABDOMEN: ("leber", "nieren", "nebennieren", "milz", "oberbauch"),
    }
)

#: "Heart size remains mildly enlarged", "the heart size has increased" and kin: every subject, verb, degree and adjective combined.
_HEART_ENLARGED: tuple[str, ...] = tuple(
    " ".join(w for w in words if w)
    for words in [
        *product(("heart", "heart size", "cardiac size", "cardiac silhouette"), ("", "is", "remains", "appears", "has"),
                 ("", "mildly", "moderately", "markedly", "slightly", "severely"), ("enlarged", "large", "increased")),
        *product(("herz", "herzschatten"), ("", "ist"), ("", "leicht", "gering", "mäßig", "deutlich", "mittelgradig"),
                 ("vergrößert", "verbreitert")),
    ]
)

#: Bronchial walls said thickened, maybe graded, or said not thickened (see NORMAL_STATEMENTS): "Bronchialwände
#: (sind leicht) verdickt", "bronchial walls are (not) thickened"; every subject, verb and degree combined.
_BRONCHIAL_WALLS: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str, str], ...] = (
    (("bronchial wall", "bronchial walls"), ("", "is", "are", "appear", "appears"),
     ("", "mildly", "slightly", "moderately", "markedly", "diffusely"), "thickened", "not"),
    (("bronchialwand", "bronchialwände", "bronchialwandungen"), ("", "ist", "sind", "erscheint", "erscheinen"),
     ("", "leicht", "gering", "geringgradig", "mäßig", "deutlich", "diskret", "dezent", "teils", "teilweise",
      "diffus"), "verdickt", "nicht"),
)
_BRONCHIAL_WALLS_THICKENED: tuple[str, ...] = tuple(
    " ".join(w for w in words if w)
    for walls, verbs, degrees, thickened, _ in _BRONCHIAL_WALLS for words in product(walls, verbs, degrees, (thickened,))
)
_BRONCHIAL_WALLS_NOT_THICKENED: tuple[str, ...] = tuple(
    " ".join(w for w in words if w)
    for walls, verbs, _, thickened, no in _BRONCHIAL_WALLS for words in product(walls, verbs, (f"{no} {thickened}",))
)
#: A collapsed lung or lobe is atelectasis: "collapse of the right lung", "collapsed left upper lobe".
_LUNG_COLLAPSE: tuple[str, ...] = tuple(
    " ".join(w for w in words if w)
    for words in product(("collapse of the", "collapse of", "collapsed"), ("", "left", "right"),
                         ("lung", "upper", "lower", "middle", "lobe", "lingula"))
) + ("lobar collapse", "lobe collapse", "lung collapse", "~lungenkollaps", "~lappenkollaps", "kollaps der lunge")

#: CT-RATE's reports (translated from Turkish) call a consolidation an infiltration where it lies in the lung:
#: "infiltration areas", "infiltrative areas", "pneumonic infiltration", "infiltration in the right lower lobe".
#: Elsewhere it is a tumour's ("infiltration of the chest wall by the mass"), and names no finding (see NOT_LABELS).
_LUNG_INFILTRATION: tuple[str, ...] = (
    "infiltration area", "infiltrative area", "area of infiltration", "areas of infiltration", "pneumonic infiltration",
    "pneumonische infiltration", "infiltration in both lungs",
    *(f"infiltration in the {side}{where}" for side, where in product(
        ("", "right ", "left "), ("lung", "upper lobe", "lower lobe", "middle lobe", "lingula", "lung parenchyma"))),
)
#: Deposits in an artery's wall. Those opening with an adjective that alone names arterial wall
#: calcification ("atherosclerotic plaque") are written out, so that the longer phrase naming where
#: they lie wins at their start: coronary deposits are CT-RATE's coronary label, not the arterial one.
_DEPOSITS: tuple[str, ...] = (
    *(f"{kind}{noun}" for kind, noun in product(
        ("", "atherosclerotic ", "calcified atherosclerotic ", "calcific atherosclerotic "),
        ("plaque", "plaques", "calcification", "calcifications"))),
    "atherosclerosis", "atherosclerotic change", "atherosclerotic changes",
)
#: What a report may call the deposits when it names the artery first ("the aorta shows wall calcifications").
_DEPOSIT_NOUNS: tuple[str, ...] = (
    "calcification", "wall calcification", "mural calcification", "plaque", "calcified plaque", "calcific plaque",
    "atherosclerotic plaque", "atherosclerotic calcification", "calcified atherosclerotic plaque",
    "calcific atheroma plaque",
)
_DEPOSITS_AFTER: tuple[str, ...] = tuple(
    f"{degree}{deposit}" for degree, deposit in product(("", "mild ", "extensive ", "scattered ", "multiple "),
                                                        _DEPOSIT_NOUNS)
)
_SHOW: tuple[str, ...] = ("shows", "show", "showed", "demonstrates", "demonstrate", "has", "have", "contains")
_BE: tuple[str, ...] = ("is", "are", "appears", "appear")
_SEEN: tuple[str, ...] = tuple(f"{verb} {seen}" for verb, seen in product(("is", "are", "was", "were"),
                                                                        ("observed", "seen", "noted", "detected")))
#: An effusion placed in the pericardium is a pericardial one, though "effusion" alone is pleural: CT-RATE's "no
#: pathological wall thickening or effusion was detected in the pericardium", "Kein Erguss im Perikard".
_IN_PERICARDIUM: tuple[str, ...] = tuple(
    f"in the {where}" for where in ("pericardium", "pericardial space", "pericardial cavity", "pericardial sac"))
_PERICARDIAL_EFFUSION: tuple[str, ...] = (
    *(f"effusion {seen}{where}" for seen, where in product(("", *(f"{seen} " for seen in _SEEN)), _IN_PERICARDIUM)),
    *(f"{effusion} {where}" for effusion, where in product(("erguss", "ergüsse"), ("im perikard", "im herzbeutel"))),
    "perikardialer erguss", "perikardialen erguss", "perikardiale erguss",
)
#: German deposits after the artery: "Koronararterien mit Wandverkalkungen" (the adjective dative after
#: "mit": "mit verkalkten Plaques"), their absence "Aorta ohne Verkalkungen".
_GERMAN_DEPOSITS: tuple[str, ...] = ("verkalkung", "wandverkalkung", "plaque", "verkalkte plaque",
                                     "kalzifizierte plaque", "arteriosklerotische plaque")
#: Their degree after "mit" ("mit deutlichen Verkalkungen", "mit geringer Wandverkalkung"); after "ohne",
#: what denies a relevant one ("ohne relevante Verkalkungen").
_GERMAN_DEPOSIT_DEGREES: tuple[str, ...] = tuple(
    f"{stem}{ending} " for stem, ending in product(
        ("deutlich", "gering", "geringgradig", "mäßig", "mittelgradig", "hochgradig", "ausgeprägt", "ausgedehnt",
         "leicht", "diskret", "vereinzelt", "multipl", "zahlreich", "kräftig"), ("en", "er")))
_GERMAN_DEPOSIT_DENIALS: tuple[str, ...] = ("", "relevante ", "wesentliche ", "signifikante ", "nennenswerte ")
_AORTA: tuple[str, ...] = ("aorta", "thoracic aorta", "aortic wall", "aortic arch", "wall of the aorta")
_BOTH_CALCIFICATIONS = ("arterial_wall_calcification", "coronary_artery_wall_calcification")
#: The arteries, by the labels of their deposits: where the deposits lie ("in the ..."), the artery as a
#: sentence's subject in English and German. The aorta's and the coronary arteries' at once, joined by
#: "and" or by a negation's "or" ("no calcification in the coronary arteries or the aorta"), name both.
_ARTERIES: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (("coronary_artery_wall_calcification",), ("coronary",), ("coronary arteries",),
     ("koronararterien", "koronarien", "herzkranzgefäße")),
    (("arterial_wall_calcification",), _AORTA, ("aorta", "thoracic aorta", "aortic wall"),
     ("aorta", "thorakale aorta", "brustaorta", "aortenwand")),
    (_BOTH_CALCIFICATIONS,
     (*(f"{aorta} {joint} {the}coronary" for aorta, joint, the in product(
         ("aorta", "thoracic aorta", "aortic wall"), ("and", "or"), ("", "the "))),
      *(f"coronary arteries {joint} {the}{aorta}" for joint, the, aorta in product(
          ("and", "or"), ("", "the "), ("aorta", "thoracic aorta")))),
     tuple(f"{first} and {the}{second}" for (first, second), the in product(
         (("aorta", "coronary arteries"), ("thoracic aorta", "coronary arteries"), ("coronary arteries", "aorta")),
         ("", "the "))),
     ("aorta und koronararterien", "aorta und die koronararterien", "koronararterien und aorta")),
)
#: Deposits and the arteries they lie in, by the labels they name, as CT-RATE writes them: named before
#: where they lie, maybe a verb between ("calcified atherosclerotic plaques are observed in the coronary
#: arteries", "calcification of the aortic wall"), or after the artery ("coronary arteries are calcified",
#: "Koronararterien mit Wandverkalkungen"); the aorta's and the coronary arteries' at once name both labels.
_DEPOSITS_IN: Mapping[tuple[str, ...], tuple[str, ...]] = MappingProxyType({
    labels: (
        *(f"{deposit} {seen}in the {where}" for deposit, seen, where in product(
            _DEPOSITS, ("", *(f"{seen} " for seen in _SEEN)), wheres)),
        *(f"{deposit} of the {where}" for deposit, where in product(_DEPOSITS, wheres)),
        *(f"{subject} {verb} {deposit}" for subject, verb, deposit in product(subjects, (*_SHOW, "with"),
                                                                           _DEPOSITS_AFTER)),
        *(f"{subject} {verb} calcified" for subject, verb in product(subjects, _BE)),
        *(f"calcified {subject}" for subject in subjects),
        *(f"{artery} {with_}" for artery, with_ in product(german, (
            *(f"mit {deposit.replace('e plaque', 'en plaque')}" for deposit in _GERMAN_DEPOSITS),
            *(f"mit {degree}{deposit}" for degree, deposit in product(_GERMAN_DEPOSIT_DEGREES, _GERMAN_DEPOSITS[:3])),
            "verkalkt"))),
        *german_before,
    )
    for (labels, wheres, subjects, german), german_before in zip(_ARTERIES, (
        tuple(f"{deposit} {where}" for deposit, where in product(
            ("plaque", "plaques", "verkalkung", "verkalkungen", "wandverkalkung", "wandverkalkungen",
             "verkalkte plaque", "verkalkte plaques", "kalzifizierte plaque", "kalzifizierte plaques",
             "arteriosklerotische plaque", "arteriosklerotische plaques"),
            ("der koronar", "in den koronar", "an den koronar", "der herzkranzgef", "in den herzkranzgef"))),
        tuple(f"{deposit} {where}" for deposit, where in product(
            ("plaque", "plaques", "verkalkung", "verkalkungen", "verkalkte plaque", "verkalkte plaques",
             "kalzifizierte plaque", "kalzifizierte plaques"),
            ("der aorta", "in der aorta", "der aortenwand", "an der aortenwand", "der thorakalen aorta",
             "in der thorakalen aorta", "der brustaorta"))),
        tuple(f"{deposit} {where}" for deposit, where in product(
            ("verkalkungen", "plaques", "verkalkte plaques", "kalzifizierte plaques"),
            ("der aorta und der koronar", "der aorta und koronar", "der koronararterien und der aorta",
             "der koronararterien und aorta", "in der aorta und den koronar"))),
    ), strict=True)
})
#: The artery named first with no deposits: "the coronary arteries show no calcification", "the aorta is
#: not calcified", "Koronararterien ohne Verkalkungen", or the deposits not seen where they would lie:
#: "calcified plaques are not observed in the aorta" (see NORMAL_STATEMENTS).
_NO_DEPOSITS: Mapping[tuple[str, ...], tuple[str, ...]] = MappingProxyType({
    labels: (
        *(f"{subject} {verb} {no} {deposit}" for subject, verb, no, deposit in product(
            subjects, _SHOW, ("no", "no significant", "no evidence of"), _DEPOSIT_NOUNS)),
        *(f"{subject} without {deposit}" for subject, deposit in product(subjects, _DEPOSIT_NOUNS)),
        *(f"{subject} {verb} not calcified" for subject, verb in product(subjects, _BE)),
        *(f"{deposit} {seen.replace(' ', ' not ')} in the {where}" for deposit, seen, where in product(
            _DEPOSITS, _SEEN, wheres)),
        *(f"{artery} {without}" for artery, without in product(german, (
            *(f"ohne {denial}{deposit}" for denial, deposit in product(_GERMAN_DEPOSIT_DENIALS, _GERMAN_DEPOSITS)),
            "nicht verkalkt"))),
    )
    for labels, wheres, subjects, german in _ARTERIES
})
#: An artery a sentence names before a predicate of its own and then its deposits, by their label: "the
#: aorta is normal in diameter with no calcification", "die Aorta ist normkalibrig mit Wandverkalkungen".
ARTERIES_NAMED_FIRST: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {labels[0]: (*subjects, *german) for labels, _, subjects, german in _ARTERIES if len(labels) == 1}
)
#: The deposits' nouns there, English and German (a plural ending may follow), and the verbs that give
#: the artery its deposits besides "with"/"mit" ("the aorta is of normal calibre and shows calcifications").
DEPOSIT_NOUNS: tuple[str, ...] = (*_DEPOSIT_NOUNS, "atheroma", *_GERMAN_DEPOSITS)
DEPOSIT_VERBS: tuple[str, ...] = (*_SHOW, "zeigt", "zeigen", "weist")

#: Lymph nodes said (not) enlarged, maybe graded: "mediastinal lymph nodes are (not) pathologically enlarged".
_LYMPH_NODES_ARE: tuple[str, ...] = ("lymph node is", "lymph nodes are", "lymph nodes", "lymph node was",
                                     "lymph nodes were")
_ENLARGEMENT_DEGREES: tuple[str, ...] = ("", "significantly ", "pathologically ", "abnormally ", "mildly ")

#: Label synonyms (lowercase). A phrase matches at a word start (English) or anywhere in a word
#: (German compounds, marked by a leading ``~``) and may end in an inflection suffix.
LABEL_SYNONYMS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "medical_material": (
            "catheter", "pacemaker", "port system", "port-a-cath", "sternal wire", "sternotomy wire",
            "endotracheal tube", "nasogastric tube", "chest tube", "drain", "stent", "prosthe", "indwelling line",
            "lines or tubes", "lines and tubes", "medical device", "support device", "clip", "zvk",
            "~schrittmacher", "portsystem", "~katheter", "drainage", "~cerclage", "fremdmaterial", "~sonde",
            "tubus", "magensonde", "pacer",
        ),
        "arterial_wall_calcification": (
            "atherosclerotic calcification", "atherosclerotic plaque", "calcified atherosclerotic",
            "aortic calcification", "aortic wall calcification", "arterial wall calcification",
            "arterial calcification", "calcific atherosclerosis", "vascular calcification", "atherosclerosis",
            "~aortensklerose", "arteriosklerotische", "~wandverkalkung", "arteriosklerose", "atherosklerose",
            "aortenverkalkung", "gefäßverkalkung", "kalzifizierende aortensklerose",
            "atherosclerotic change", "aortic plaque", "~aortenplaque", "aortale plaque", "aortalen plaque",
            *_DEPOSITS_IN[("arterial_wall_calcification",)],
        ),
        "cardiomegaly": (
            "cardiomegaly", "enlarged heart", "cardiac enlargement", "enlarged cardiac", "enlargement of the heart",
            "heart size is persistently enlarged", "heart enlargement", *_HEART_ENLARGED,
            # "borderline" reads positive, as in NegBio's and CheXpert's reference labels
            "borderline heart size", "heart size is borderline", "heart size borderline", "heart is borderline in size",
            "heart borderline in size", "heart size borderline enlarged", "heart is borderline enlarged",
            "heart borderline enlarged", "borderline enlarged heart", "grenzwertige herzgröße", "herz grenzwertig groß",
            "herzgröße grenzwertig", "grenzwertig großes herz", "increased heart size", "increased cardiac size",
            *(phrase.format(measure) for phrase, measure in product(
                ("increased cardiothoracic {}", "cardiothoracic {} increased", "cardiothoracic {} is increased"),
                ("ratio", "index"))),
            "~kardiomegalie", "vergrößertes herz", "herzvergrößerung",
        ),
        "pericardial_effusion": ("pericardial effusion", "pericardial fluid", "~perikarderguss", "~perikardergüss",
                                 *_PERICARDIAL_EFFUSION),
        "coronary_artery_wall_calcification": (
            "coronary artery calcification", "coronary calcification", "coronary artery wall calcification",
            "coronary sclerosis", "coronary atherosclerosis", "coronary plaque", "coronary artery plaque",
            "~koronarkalk", "~koronarplaque", "plaque der koronar", "plaques der koronar", "koronare plaque",
            "koronaren plaque", "~koronarverkalkung", "~koronarsklerose", "verkalkungen der koronar",
            "koronararterienverkalkung", *_DEPOSITS_IN[("coronary_artery_wall_calcification",)],
        ),
        "hiatal_hernia": ("hiatal hernia", "hiatus hernia", "~hiatushernie", "hernia of the hiatus",
                          "paraesophageal hernia", "paraoesophageal hernia", "~gleithernie", "paraösophageale hernie"),
        "lymphadenopathy": (
            "lymphadenopathy", "adenopathy", "enlarged lymph node", "enlarged mediastinal lymph node",
            "enlarged hilar lymph node", "pathologically enlarged lymph", "lymph node enlargement",
            "~lymphadenopathie", "lymphknotenvergrößerung",
            # "vergrößerte Lymphknoten", "keine vergrößerten mediastinalen oder hilären Lymphknoten"
            *(f"vergrößerte{ending} {where}lymphknoten" for ending in ("", "n", "r") for where in (
                "", *(f"{first}{ending} " for first in ("mediastinale", "hiläre", "axilläre")),
                *(f"{first}{ending} {joint} {second}{ending} " for first, second in (("mediastinale", "hiläre"),
                                                                                     ("hiläre", "mediastinale"))
                  for joint in ("oder", "und", "bzw.")))),
            # CT-RATE's "lymph nodes of pathological size", "mediastinal lymph nodes are enlarged", "no lymph
            # node was observed in the mediastinum in pathological size and appearance" (its words for nodes)
            "in pathological size and appearance", "of pathological size and appearance",
            "lymph node of pathological size", "lymph nodes of pathological size", "lymph node in pathological size",
            "lymph nodes in pathological size", "lymph node with pathological size", "lymph nodes with pathological size",
            *(f"{nodes} {degree}enlarged" for nodes, degree in product(_LYMPH_NODES_ARE, _ENLARGEMENT_DEGREES)),
            "lymphknoten vergrößert", "lymphknoten pathologisch vergrößert",
        ),
        "emphysema": ("emphysema", "emphysematous", "~emphysem"),
        "atelectasis": ("atelectasis", "atelectases", "atelectatic", "~atelektase", "~atelektat", "dystelectasis",
                        "~dystelektase", *_LUNG_COLLAPSE,
                        # German reports' "Minderbelüftung"/"Belüftungsstörung" of the lung bases is atelectasis
                        "~minderbelüftung", "minderbelüftet", "~belüftungsstörung",
                        # typos of real reports that spell no other word (so are "effuson", "consolidaton")
                        "atelactasis", "atelectesis"),
        "lung_nodule": (
            "nodule", "nodular lesion", "pulmonary mass", "lung mass", "~rundherd", "nodulus", "noduli",
            "lung lesion", "pulmonary lesion", "~knoten der lunge", "micronodule", "~lungenknoten", "pulmonale knoten",
            "pulmonaler knoten", "pulmonalen knoten", "~mikronodul",
        ),
        "lung_opacity": (
            "opacity", "opacities", "opacification", "ground-glass", "ground glass", "~milchglas", "~verdichtung",
            "~trübung", "airspace disease",
            # a ground-glass infiltration is an opacity, no consolidation (see _LUNG_INFILTRATION)
            "ground-glass infiltration", "ground glass infiltration",
        ),
        "pulmonary_fibrotic_sequela": (
            "fibrotic", "fibrosis", "fibrous", "scarring", "~fibrotisch", "~fibrose", "narbig", "~narbe",
            "parenchymal band", "fibrotic band", "residual scar",
            # CT-RATE's "sequelae changes" ("fibrotic sequelae" is "fibrotic"); not "sequela" alone: chest
            # films' "sequela of prior granulomatous disease" are calcified granulomas, no fibrosis
            "sequela change", "sequelae change",
            # honeycombing is end-stage fibrosis ("honeycomb pattern", "Honigwabenmuster", "Honigwabenlunge")
            "honeycombing", "honeycomb", "~honigwaben",
        ),
        "pleural_effusion": (
            "pleural effusion", "pleural fluid", "effusion", "erguss", "ergüsse", "~pleuraerguss", "~pleuraergüss",
            "~pleuraergusses", "hydrothorax", "pleural effusions",
            # a residual or an accompanying effusion ("kleiner Resterguss", "Begleiterguss bei Pneumonie")
            "resterguss", "restergüsse", "begleiterguss", "begleitergüsse", "effuson",
        ),
        "mosaic_attenuation_pattern": ("mosaic attenuation", "mosaic pattern", "mosaic perfusion", "~mosaik"),
        "peribronchial_thickening": (
            "peribronchial thickening", "peribronchial wall thickening", "bronchial wall thickening",
            "peribronchial cuffing", "peribronchiale wandverdickung", "peribronchiale verdickung",
            "bronchialwandverdickung", "peribronchialen wandverdickung", "verdickte bronchialw",
            "verdickten bronchialw",
            # the thickened structure named after the thickening, or after "thickened"
            "thickening of the peribronchial interstiti", "peribronchial interstitial thickening",
            "thickening of the bronchial wall", "thickened bronchial wall", *_BRONCHIAL_WALLS_THICKENED,
        ),
        "consolidation": (
            "consolidation", "consolidative", "airspace consolidation", "~konsolidierung", "~infiltrat",
            "~konsolidation", *_LUNG_INFILTRATION, "consolidaton",
        ),
        "bronchiectasis": ("bronchiectasis", "bronchiectases", "bronchiectatic", "~bronchiektas", "~bronchiektat"),
        "interlobular_septal_thickening": (
            "interlobular septal thickening", "septal thickening", "thickened interlobular septa",
            "interlobuläre septenverdickung", "~septenverdickung", "verdickte interlobuläre septen",
            "interlobulären septen", "interlobuläre septen", "~interlobulärsept", "septumverdickung",
            "thickening of the interlobular septa", "thickening of interlobular septa",
        ),
    }
)

_BOTH_EFFUSIONS = ("pleural_effusion", "pericardial_effusion")
#: Two findings that share their head noun, written once: "no pleural or pericardial effusion",
#: "Pleura- und Perikardergüsse", "plaques in the aorta and coronary arteries". One phrase, a mention
#: of each label; matched like word-start synonyms.
JOINT_MENTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        f"{first} {conjunction} {second}": _BOTH_EFFUSIONS
        for pairs, conjunctions in (
            ((("pleural", "pericardial effusion"), ("pericardial", "pleural effusion")), ("or", "and", "nor")),
            ((("pleura-", "perikarderguss"), ("pleura-", "perikardergüss"), ("perikard-", "pleuraerguss"),
              ("perikard-", "pleuraergüss")), ("oder", "und", "noch", "bzw.")),
        )
        for (first, second), conjunction in product(pairs, conjunctions)
    }
    # fibrosis and atelectasis at once: "fibroatelectatic changes", "Fibroatelektasen"
    | dict.fromkeys(("fibroatelectatic", "fibroatelectasis", "fibroatelectases", "fibroatelektase",
                     "fibroatelektatisch"), ("atelectasis", "pulmonary_fibrotic_sequela"))
    # the aorta's plaques and the coronary arteries' at once: "plaques are observed in the aorta and coronary
    # arteries", "aortic and coronary artery calcifications"
    | dict.fromkeys((*_DEPOSITS_IN[_BOTH_CALCIFICATIONS],
                     *(f"{first} and {second} {noun}" for (first, second), noun in product(
                         (("aortic", "coronary"), ("aortic", "coronary artery"), ("coronary", "aortic")),
                         ("calcification", "atherosclerosis", "plaque", "wall calcification")))),
                    _BOTH_CALCIFICATIONS)
)

#: Statements that a finding is absent, read whole: without a negation word ("heart size normal" says:
#: no cardiomegaly) or with one where the finding is named after it ("lymph nodes are not enlarged").
#: Matched like word-start synonyms; a mention reads NEGATIVE whatever the triggers, and a phrase listed
#: under two labels ("the aorta and coronary arteries show no plaques") is a mention of both.
NORMAL_STATEMENTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "cardiomegaly": (
            "heart size normal", "heart size is normal", "heart size within normal limits",
            "heart size is within normal limits", "normal heart size", "heart is normal in size",
            "heart normal in size", "cardiac size normal", "cardiac size is normal", "normal cardiac size",
            "cardiac silhouette normal", "cardiac silhouette is normal", "normal cardiac silhouette",
            "cardiac silhouette within normal limits", "cardiac silhouette is within normal limits",
            "herz normal groß", "herzgröße normal", "normale herzgröße", "herz regelrecht groß", "normal großes herz",
            "normgroßes herz", "herz normgroß", "heart is not enlarged", "heart size is not enlarged",
            "heart not enlarged", "herz nicht vergrößert", "herz ist nicht vergrößert",
            # CT-RATE's "Heart contour and size are normal"
            "heart contour and size are normal", "heart contour and size normal", "heart size and contour are normal",
            "heart size and contour normal", "herzgröße regelrecht",
        ),
        **{label: tuple(phrase for labels, phrases in _NO_DEPOSITS.items() if label in labels for phrase in phrases)
           for label in _BOTH_CALCIFICATIONS},
        # "effusion is not observed in the pericardium": the negation inside the phrase
        "peribronchial_thickening": _BRONCHIAL_WALLS_NOT_THICKENED,
        "pericardial_effusion": tuple(f"effusion {seen.replace(' ', ' not ')} {where}"
                                      for seen, where in product(_SEEN, _IN_PERICARDIUM)),
        "lymphadenopathy": (
            *(f"{nodes} not {degree}enlarged" for nodes, degree in product(_LYMPH_NODES_ARE, _ENLARGEMENT_DEGREES)),
            # "Lymphknoten (mediastinal und hilär) nicht (pathologisch) vergrößert": where they lie may stand between
            *(f"lymphknoten {where}nicht {degree}vergrößert"
              for where, degree in product(("", *(f"{w} " for w in ("mediastinal", "hilär", "axillär", "supraklavikulär",
                                                                   "mediastinal und hilär", "hilär und mediastinal"))),
                                           ("", "pathologisch "))),
        ),
    }
)

#: Statements that a finding is equivocal ("heart size upper limits normal"): a mention reads
#: UNCERTAIN whatever the triggers.
UNCERTAIN_STATEMENTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "cardiomegaly": (
            "upper limits of normal heart size", "heart size is upper limits normal", "heart size upper limits normal",
            "heart size at the upper limits of normal", "heart size at upper limits of normal",
            "herzgröße an der oberen grenze der norm", "herz an der oberen normgrenze",
        ),
    }
)

#: German "vollständig rückläufiger Erguss": a finding that regressed completely is gone, as "Erguss
#: vollständig rückläufig" says after it; triggers match whole words, so each inflected form is listed.
_RESOLVED_ADJECTIVE: tuple[str, ...] = tuple(
    f"{degree} {stem}{ending}"
    for degree, stem, ending in product(("vollständig", "komplett"), ("regredient", "rückläufig"),
                                        ("e", "em", "en", "er", "es"))
)
#: "nicht vollständig regredient(er)": regressed, but not completely: still there, no negation.
_NOT_RESOLVED: tuple[str, ...] = tuple(
    f"nicht {degree} {stem}{ending}"
    for degree, stem, ending in product(("vollständig", "komplett"), ("regredient", "rückläufig"),
                                        ("", "e", "em", "en", "er", "es"))
)

#: German "(no longer) there" after the finding: "Infiltrat nicht nachweisbar", "Pleuraerguss nicht mehr vorhanden".
_NOT_SEEN_GERMAN: tuple[str, ...] = tuple(
    f"nicht {longer}{seen}" for longer, seen in product(
        ("", "mehr "), ("vorhanden", "nachweisbar", "nachzuweisen", "abgrenzbar", "abzugrenzen", "sichtbar", "darstellbar",
                        "erkennbar", "feststellbar")))

#: ConText triggers (lowercase, matched at word boundaries; longer triggers win at a position).
NEGATION_PRE: tuple[str, ...] = (
    "no", "not", "without", "free of", "clear of", "negative for", "resolution of", "no evidence of", "no signs of",
    "absence of", "resolved",
    "there is no", "rather than", "kein", "keine", "keinen", "keiner", "keines", "ohne", "nicht", "kein nachweis",
    "kein anhalt", "kein hinweis", "ausschluss", "fehlender nachweis", "fehlendem nachweis", "frei von", "no definite evidence of", "neither", "weder",
    # no suspicion is a negation, though "Verdacht auf" hedges: "kein Verdacht auf Infiltrat", "kein Infiltratverdacht"
    "kein verdacht auf", "ohne verdacht auf",
    *_RESOLVED_ADJECTIVE,
)
NEGATION_POST: tuple[str, ...] = (
    "is not seen", "are not seen", "not seen", "not identified", "absent", "has resolved",
    "have resolved", "has cleared", "have cleared", "resolved", "ruled out", *_NOT_SEEN_GERMAN,
    # CT-RATE's "Emphysema was not observed", "Pleural effusion was not detected"
    "not detected", "not observed", "not noted", "not visualized", "not demonstrated", "not evident",
    "not appreciated", "not visible",
    "ausgeschlossen", "not present", "is excluded", "findet sich nicht", "finden sich nicht", "besteht nicht", "bestehen nicht",
    "liegt nicht vor", "liegen nicht vor", "no longer seen", "no longer visible", "no longer present",
    "no longer identified", "no longer evident", "no longer demonstrated", "no longer apparent",
    # structured reports: "Pleuraerguss: nein", "Pleural effusion: none" (": kein(e)" starts "Lunge: keine
    # Infiltrate": only with a period after it, "Noduli: keine.", does it end the statement)
    ": nein", ": keiner", ": none", ": negativ", ": negative", ": keine.", ": kein.",
    # "regredient"/"rückläufig" alone is smaller, still there; "unauffällig" ends "X, sonst unauffällig"
    "vollständig regredient", "komplett regredient", "vollständig rückläufig", "komplett rückläufig",
)
#: A finding not excluded is uncertain, however the exclusion is graded: "cannot be completely ruled out" is no
#: "ruled out", "nicht ganz auszuschließen" no "ausgeschlossen". English "cannot (completely) exclude" hedges what
#: follows, "cannot be (completely) excluded" what comes before, as German "nicht (sicher) auszuschließen" does.
_CANNOT: tuple[str, ...] = ("cannot", "can not", "can't", "can’t", "could not", "couldn't", "couldn’t")
_EXCLUSION_DEGREES: tuple[str, ...] = ("", "completely ", "entirely ", "fully ", "totally ", "definitely ",
                                      "definitively ", "confidently ", "reliably ", "safely ")
_NOT_EXCLUDING: tuple[str, ...] = tuple(f"{cannot} {degree}{verb}" for cannot, degree, verb in product(
    _CANNOT, _EXCLUSION_DEGREES, ("exclude", "rule out")))
_NOT_EXCLUDED: tuple[str, ...] = (
    *(f"{cannot} be {degree}{verb}" for cannot, degree, verb in product(
        _CANNOT, _EXCLUSION_DEGREES, ("excluded", "ruled out"))),
    *(f"not {degree}{verb}" for degree, verb in product(_EXCLUSION_DEGREES, ("excluded", "ruled out"))),
    *(f"nicht {degree}{verb}" for degree, verb in product(
        ("", "sicher ", "ganz ", "vollständig ", "komplett ", "definitiv ", "mit sicherheit ", "mit letzter sicherheit "),
        ("auszuschließen", "ausgeschlossen", "ausschließen"))),
)
#: German hedges before the finding, as adverbs or inflected adjectives: "fraglicher Rundherd", "mögliches Infiltrat",
#: "vermutlich Dystelektase", "wahrscheinliche Narbe"; "eventuell" as an adverb only ("evtl. Atelektase"): its
#: adjective hedges a procedure ("eventuelle Kontrolle des Rundherdes").
_GERMAN_HEDGES: tuple[str, ...] = (
    *(f"{stem}{ending}" for stem, ending in product(("fraglich", "möglich", "wahrscheinlich", "vermutlich"),
                                                    ("", "e", "em", "en", "er", "es"))),
    "eventuell", "evtl", "möglicherweise",
)
#: Pre triggers of uncertainty; not "consistent with", "compatible with" nor "vereinbar mit": they assert the finding,
#: as the CheXpert and NegBio labelers read "consistent with" ("consistent with possible" is uncertain by its
#: "possible", as "am ehesten vereinbar mit" is by "am ehesten").
UNCERTAIN_PRE: tuple[str, ...] = (
    "possible", "possibly", "probable", "probably", "may", "may represent", "may reflect", "may be", "could represent",
    "could be", "could", "might represent", "suspicious for", "suspected", "suspect", "suspicion for",
    "suspicion of", "questionable", "question", "likely", "concerning for", "concern for", "rule out", "rule-out",
    "r/o", "to exclude", *_NOT_EXCLUDING, "evaluate for", "evaluation for",
    "differential diagnosis", "differential", "consistent with possible",
    "suggest", "suggests", "suggesting", "suggestive of", "could suggest", "hinweisend auf", "spricht für",
    "sprechen für",
    "question of", "versus", "vs", "v.a", "v. a", "vd.a", "vd. a",
    "verdacht auf", "verdächtig auf", "suspekt auf", "frage nach", "zum ausschluss", "dd", "am ehesten",
    *_GERMAN_HEDGES, "a.e", "a. e", "differentialdiagnostisch", "differenzialdiagnostisch",
    "ddx",
    "nicht sicher",
    # "equivocal nodule", "indeterminate opacity"; "Eher Atelektase als Infiltrat" (rather A than B: both open);
    # German "denkbar"/"vorstellbar" hedge after the finding (UNCERTAIN_POST_LAST), before it only with their verb
    "equivocal", "indeterminate", "eher", "denkbar ist", "denkbar wäre", "vorstellbar ist", "vorstellbar wäre",
    # "no new nodules" leaves the known ones open: uncertain, as the CheXpert labeler reads it
    "no new", "keine neuen", "keine neue", "kein neuer", "kein neues", "keine neu aufgetretenen",
    # also post triggers: "there is possible effusion" as much as "effusion is possible"
    "is possible", "is questionable", "is suspected", "are suspected",
    # a low likelihood is uncertain, not negated, as the CheXpert labeler reads "less likely"
    "unlikely", "less likely", "unwahrscheinlich",
)
UNCERTAIN_POST: tuple[str, ...] = (
    *_NOT_EXCLUDED, "is questionable", "is possible", "is suspected", "are suspected", "fraglich", "möglich",
    "nicht sicher abgrenzbar", "nicht mehr sicher abgrenzbar",
    "unlikely", "less likely", "unwahrscheinlich",
    "is equivocal", "are equivocal", "is indeterminate", "are indeterminate",
    "not clearly seen", "not clearly identified", "not clearly visualized", "not clearly demonstrated",
    "not definitely seen", "not definitely identified",
)
#: Post triggers that reach back only to the finding right before them, where they also end its
#: clause: "atelectasis likely.", "Erguss wahrscheinlich links." Before another word they qualify
#: what follows ("opacity likely atelectasis": the opacity is there), and after a comma a finding of
#: their own ("nodule, likely granuloma"). "versus" is none: "atelectasis versus scarring" reads the
#: first finding present in OpenI's radiologist gold standard (NegBio's), only the second uncertain.
UNCERTAIN_POST_LAST: tuple[str, ...] = (
    "likely", "is likely", "are likely", "probable", "is probable", "suspected", "possible", "questionable",
    "wahrscheinlich", "equivocal", "indeterminate",
    *(f"{verb}{hedge}" for verb, hedge in product(("", "ist ", "sind ", "wäre ", "wären "), ("denkbar", "vorstellbar"))),
    # CT-RATE's hedge after the finding: "Atelectasis is considered.", "pneumonia was considered" (not "consolidation
    # is considered pneumonia": the finding is there, another word follows)
    "is considered", "are considered", "was considered", "were considered",
    # a question mark after a finding asks whether it is there: "Opacity, atelectasis? Infiltrat?"
    "?",
)
#: Words a German finding may end in that hedge it: "Infiltratverdacht", "infiltratverdächtige Verdichtung".
HEDGE_COMPOUNDS: tuple[str, ...] = ("verdacht", "verdächtig")
#: Phrases that hold a label's words but name none of its findings: tumour "infiltrating" is no
#: "infiltrate", a thyroid nodule no lung nodule. Matched like labels, they win as the longer phrase.
NOT_LABELS: tuple[str, ...] = (
    "~infiltrating", "~infiltrative", "~infiltration", "tumor infiltration", "tumour infiltration",
    "tumoral infiltration", "neoplastic infiltration", "malignant infiltration",
    "thyroid nodule", "nodular goiter", "nodular goitre", "adrenal nodule", "hepatic nodule", "liver nodule",
    "renal nodule", "splenic nodule", "breast nodule", "skin nodule", "cutaneous nodule", "subcutaneous nodule",
    "intracutaneous nodule", "soft tissue nodule", "peritoneal nodule",
    # air in the soft tissues or the mediastinum (after surgery, a chest tube, a trauma) is no lung emphysema
    "subcutaneous emphysema", "soft tissue emphysema", "soft-tissue emphysema", "surgical emphysema",
    "chest wall emphysema", "mediastinal emphysema", "~hautemphysem", "~weichteilemphysem", "~mediastinalemphysem",
    *(f"{where}{ending} emphysem" for where, ending in product(("subkutan", "mediastinal"), ("", "e", "em", "en", "es"))),
)
#: German "nicht" before an adjective of the finding, not the finding: "nicht verkalkter Rundherd" is a nodule.
_NOT_ADJECTIVE: tuple[str, ...] = tuple(
    f"nicht{sep}{stem}{ending}"
    for sep, stem, ending in product(
        (" ", "-"),
        ("verkalkt", "kalzifiziert", "solid", "progredient", "größenprogredient", "raumfordernd", "gekammert",
         "obstruktiv", "obstruierend", "disloziert", "spikuliert"),
        ("", "e", "em", "en", "er", "es"),
    )
)
#: "Opacity noted, not visualized on prior": absent then, present now; no negation.
_NOT_SEEN_BEFORE: tuple[str, ...] = tuple(
    f"not {seen} {before}"
    for seen, before in product(
        ("seen", "visualized", "visible", "identified", "present", "detected", "observed", "evident",
         "demonstrated", "noted", "appreciated"),
        ("on prior", "on the prior", "on previous", "on the previous", "on comparison", "on the comparison",
         "previously"),
    )
)
#: Words that open a clause stating what there is: they end a trigger's scope (see SCOPE_TERMINATORS).
_EXISTENTIALS: tuple[str, ...] = ("there is", "there are", "es zeigt sich", "es zeigen sich", "es findet sich",
                                  "es finden sich", "es besteht", "es bestehen")
#: ... but not one a trigger asks about: "evaluate for whether there is effusion".
_EMBEDDED_EXISTENTIALS: tuple[str, ...] = tuple(f"{conjunction} {there}" for conjunction, there in product(
    ("whether", "if", "that", "ob"), _EXISTENTIALS))
#: Phrases that look like triggers but are not ("no change" says nothing about presence).
PSEUDO_TRIGGERS: tuple[str, ...] = (
    "no change", "no changes", "no significant change", "no significant changes", "no interval change",
    "no interval changes", "without change", "without significant change", "without interval change",
    "without significant interval change", "not only", "no increase", "no decrease",
    "partially resolved", "nearly resolved", "almost resolved", "largely resolved", "incompletely resolved",
    # resolved in part, or not yet: still there, as "nicht vollständig regredient" (see _NOT_RESOLVED)
    "partial resolution", "incomplete resolution", "near resolution", "near complete resolution",
    "near-complete resolution", "nearly complete resolution", "almost complete resolution", "without resolution",
    "no resolution", "not resolved", "not yet resolved", "not completely resolved", "not fully resolved",
    "not entirely resolved",
    "no significant interval change", "no appreciable change", "no substantial change", "no growth",
    "no interval growth", "no significant growth", "no interval increase", "no significant increase",
    "keine befundänderung", "keine änderung", "ohne änderung", "keine größenänderung", "keine größenprogredienz",
    "keine wesentliche befundänderung", "keine wesentliche änderung", "keine wesentliche größenänderung",
    "keine größenzunahme", "keine progredienz", "keine zunahme", "keine abnahme", "kein wachstum",
    "ohne befundänderung", "ohne wesentliche befundänderung", "ohne größenzunahme", "ohne größenprogredienz",
    "ohne progredienz", "ohne wachstum",
    "nicht verändert", "no further", "not significantly changed", "unverändert", "to suggest", *_NOT_ADJECTIVE,
    *_EMBEDDED_EXISTENTIALS,
    # a finding read as what it stands for is there: "consolidation was considered in favor of pneumonia"
    *(f"{be} considered in favor of" for be in ("is", "are", "was", "were")),
    *_NOT_RESOLVED, *_NOT_SEEN_BEFORE,
)
#: Words and marks that end a trigger's scope.
SCOPE_TERMINATORS: tuple[str, ...] = (
    "but", "however", "although", "though", "except", "apart from", "other than", "which", "aber", "jedoch",
    "allerdings", "außer", "ausser", "bis auf", "abgesehen von", "hingegen", "dagegen", "whereas", "while", ";",
    "sowie", "wobei",
    # a clause that states a finding of its own: "No pneumothorax and there are small effusions", "Kein Erguss, es
    # zeigt sich eine Atelektase" ("there is no" is a negation, the longer trigger; see _EMBEDDED_EXISTENTIALS)
    *_EXISTENTIALS,
)

#: Words that join the last item of a list ("no effusion, pneumothorax or consolidation in the right
#: lower lobe"): one after a comma in a pre trigger's scope makes the items after the comma the
#: trigger's list, though one of them is placed or qualified (see LIST_ITEM_QUALIFIERS), unless it is
#: an "and" after that item's placing word (see LIST_DISJUNCTIONS).
LIST_COORDINATORS: tuple[str, ...] = ("or", "and", "nor", "oder", "und", "noch", "bzw")
#: The coordinators that go on with a negated list after a placed item ("no effusion, consolidation in
#: the right lower lobe or pneumothorax"): a negation lists its alternatives with "or". An "and" there
#: joins the placed item's own statement ("No effusion, nodule in the right lower lobe and
#: atelectasis", "consolidation in the right and left lower lobes").
LIST_DISJUNCTIONS: tuple[str, ...] = ("or", "nor", "oder", "noch", "bzw")
#: Words that place or qualify a finding: an item after a comma that holds one (or a number), with no
#: coordinator before it nor a list going on after it, is a statement of its own ("Kein Pleuraerguss,
#: Rundherd im rechten Unterlappen", "Kein Erguss, Rundherd im Unterlappen und Atelektase").
LIST_ITEM_QUALIFIERS: tuple[str, ...] = ("in", "at", "within", "with", "on", "im", "am", "an", "mit", "der", "des")
#: Participles a telegram-style item writes after its structure for the predicate it leaves out: an item after a
#: comma that ends in one after a word states its finding like a placed one (see LIST_ITEM_PLACES) ("Kein Erguss, Herz vergrößert", "No
#: effusion, lymph nodes enlarged", "Kein Infiltrat, Bronchialwände leicht verdickt"); before its noun ("enlarged
#: heart") it is the noun's attribute, and the item one of the list.
LIST_ITEM_PREDICATES: tuple[str, ...] = ("enlarged", "increased", "thickened", "calcified", "dilated", "vergrößert",
                                         "verbreitert", "verdickt", "verkalkt", "erweitert")
#: Words that grade a finding's degree or size: an item after a comma in a negation's scope that starts
#: with one asserts its finding, a coordinator in it or not ("No effusion, small nodule and mild
#: atelectasis", "Kein Erguss, geringes Emphysem"). Not "large", "significant" or "groß": negated lists
#: hedge with them ("no consolidation, large pleural effusion, or pneumothorax": none that is large).
LIST_ITEM_DEGREES: tuple[str, ...] = (
    "small", "tiny", "trace", "minimal", "minimally", "mild", "mildly", "slight", "slightly", "minor", "moderate",
    "moderately", "marked", "markedly", "severe", "severely", "extensive",
    *(f"{stem}{ending}" for stem, ending in product(
        ("gering", "geringgradig", "geringfügig", "klein", "leicht", "mäßig", "mittelgradig", "hochgradig",
         "ausgeprägt", "deutlich", "diskret", "dezent", "schmal", "minimal"),
        ("", "e", "em", "en", "er", "es"))),
)
#: Finite verbs: one after an "and" in a trigger's scope, before the finding's end or after a definite
#: article (CLAUSE_ARTICLES) there, opens a clause with a subject and predicate of its own, out of the
#: trigger's scope: "No consolidation and the heart is enlarged", "no effusion and lymph nodes are enlarged".
#: A verb after an item of the list is the whole list's: "no effusion and consolidation are seen".
CLAUSE_VERBS: tuple[str, ...] = (
    *_BE, *_SHOW, "was", "were", "had", "remains", "remain", "seems", "seem", "measures", "measure", "persists",
    "persist", "ist", "sind", "war", "waren", "hat", "haben", "zeigt", "zeigen", "erscheint", "erscheinen", "wirkt",
    "wirken", "bleibt", "bleiben", "misst", "messen",
)
CLAUSE_ARTICLES: tuple[str, ...] = ("the", "der", "die", "das", "dem", "den")
#: Words that assert what they open: an item after a comma, an "and" or a "with" in a trigger's scope that
#: starts with one states its finding ("No pleural effusion, only mild emphysema", "Kein Erguss, lediglich
#: Dystelektase", "Kein Infiltrat, allenfalls diskrete Atelektase").
LIST_ITEM_ASSERTIONS: tuple[str, ...] = ("only", "lediglich", "nur", "allenfalls")
#: Words that name a side: a degree next to one grades its finding where it lies ("no effusion on the
#: left, small on the right", "Kein Erguss rechts, links schmaler Erguss").
SIDES: tuple[str, ...] = ("left", "right", "bilateral", "bilaterally", "links", "rechts", "beidseits", "bds")
#: Words that place a finding written after it with no preposition, as telegram style does: its side or lobe
#: ("V.a. Infiltrat, Atelektase links", "Kein Infiltrat, Atelektase re. basal", "atelectasis left lower lobe"). An
#: item after a comma that ends in a run of them after its noun states its finding like one placed by a
#: preposition (see LIST_ITEM_QUALIFIERS); before a noun they are its attribute ("bilateral atelectasis").
LIST_ITEM_PLACES: tuple[str, ...] = (
    *SIDES, "li", "re", "linksseitig", "rechtsseitig", "beidseitig", "basal", "bibasal", "bibasilar", "apikal",
    "apical", "unterlappen", "oberlappen", "mittellappen", "lower lobe", "lower lobes", "upper lobe", "upper lobes",
    "middle lobe", "lingula",
)
#: Words for a lymph node ("LK" is German reports' abbreviation): one with a size of 10 mm or more is
#: lymphadenopathy, as CT-RATE reads a node's short axis ("mediastinal lymph nodes up to 12 mm").
LYMPH_NODES: tuple[str, ...] = ("lymph node", "lymph nodes", "node", "nodes", "lymphknoten", "lk")
#: Words after a list of lymph nodes and a comma that measure one of them: "mediastinal lymph nodes, the
#: largest 14 mm in short axis", "mediastinale Lymphknoten, der größte mit 14 mm".
LARGEST_OF_SEVERAL: tuple[str, ...] = ("the largest", "largest", "der größte", "die größte", "der größten",
                                       "die größten", "den größten")
#: Stems of a calcification: a lymph node's size in a clause that names one measures the calcification or
#: a calcified granuloma, not an enlarged node ("lymph node calcifications up to 12 mm").
CALCIFICATION_STEMS: tuple[str, ...] = ("calcif", "verkalk", "kalzifiz")
#: Words before a size that bound it from above: "lymph nodes smaller than 15 mm" measures no enlarged node.
SIZE_BELOW: tuple[str, ...] = (
    "<", "≤", "smaller than", "less than", "under", "below", "not larger than", "not exceeding", "kleiner als",
    "unter", "weniger als", "nicht größer als", "nicht über", "unterhalb von",
)
#: Labels of findings in an organ without sides, which a side's degree never grades: "no pleural or
#: pericardial effusion on the left, small on the right" is a right pleural effusion.
UNSIDED_LABELS: frozenset[str] = frozenset({"pericardial_effusion", "cardiomegaly", "hiatal_hernia",
                                            "arterial_wall_calcification"})

#: Section headings (lowercase), English and German, at a line start followed by ":" or a line end.
HEADINGS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "findings": ("findings", "finding", "befund", "befunde", "report", "description", "befundbeschreibung"),
        "impression": (
            "impression", "impressions", "conclusion", "conclusions", "summary", "assessment", "opinion",
            "beurteilung", "zusammenfassung", "diagnose", "bewertung",
        ),
        "technique": ("technique", "technik", "untersuchungstechnik", "methods", "procedure", "protocol", "protokoll"),
        "comparison": ("comparison", "comparisons", "prior studies", "vergleich", "voruntersuchung",
                       "voruntersuchungen", "voraufnahmen"),
        "clinical_information": (
            "clinical information", "clinical history", "clinical indication", "history", "indication",
            "indications", "reason for exam", "reason for examination", "clinical question", "question", "request",
            "medical history", "relevant medical history", "clinical details", "fragestellung", "klinische angaben",
            "klinische angabe", "anamnese", "indikation", "rechtfertigende indikation", "klinik",
        ),
    }
)

#: Heading (lowercase, single-spaced) -> the section it opens.
SECTION_OF_HEADING: Mapping[str, str] = MappingProxyType(
    {heading: name for name, headings in HEADINGS.items() for heading in headings}
)

#: Abbreviations (lowercase, without their final period) after which a period does not end a sentence.
ABBREVIATIONS: frozenset[str] = frozenset(
    {
        "approx", "ca", "se", "ser", "im", "img", "bild", "v.a", "z.b", "e.g", "i.e", "i.v", "dr", "prof", "med",
        "nr", "vs", "bzw", "ggf", "evtl", "max", "min", "mind", "li", "re", "bds", "st", "z.n", "u.a", "d.h",
        "mr", "mrs", "ms", "fig", "abb", "sog", "v.a.", "a.e", "lt", "rt", "incl", "inkl", "z.t", "o.g", "sp",
        "pat", "geb", "tel", "str", "vgl", "ant", "sup", "inf", "lat", "vd", "vd.a", "dd",
    }
)
