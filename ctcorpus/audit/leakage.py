"""Overlap and leakage: the same patient, study, accession or person across splits; duplicate volumes and reports.

Every check runs over frames that carry a ``corpus`` and a ``split`` column, so one code path
serves both questions: *within* a corpus (an entity in two splits is a leak, a duplicate inside a
split inflates it) and *against* another corpus (a patient, study or accession in both corpora
under different splits, e.g. this corpus's train set holds the other's test patients; a copied
volume or report in both: ``high`` when the splits differ, ``medium`` when they agree).
Near-duplicate volumes are found by fingerprint correlation, near-duplicate reports by MinHash LSH
over word shingles (candidates only, each verified by exact Jaccard), template wording that many
reports share left out: neither is all-pairs on text.
Near-duplicates are only reported between patients: a follow-up scan shares its patient's anatomy
and a follow-up report copies wording forward ("unchanged since ..."), and neither can leak
across splits, which are drawn per patient. Exact copies are reported whoever they belong to.
Fingerprints of two versions are not compared (:func:`compared_fingerprints`): the volumes of
another version are reported as such and left out of that check alone.
An accession or patient id that is a placeholder (:func:`placeholder_ids`) is reported as such
and left out of its id's check: it names no one exam or patient, so it would be one across splits.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from types import MappingProxyType

import numpy as np
import pandas as pd
from datasketch import MinHash, MinHashLSH
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ctcorpus.audit.findings import Finding, FindingKind, Severity, groups_text
from ctcorpus.audit.fingerprint import (
    FINGERPRINT_VERSION,
    fingerprint_matrix,
    similar_pairs,
)
from ctcorpus.config.audit import AuditConfig
from ctcorpus.pseudonym import accession_key

_WORD = re.compile(r"\w+", re.UNICODE)

#: Per id column, what one of its values names one of: an accession one patient's exam, a patient
#: id one person (``patient_key``). A value held by many is a placeholder (:func:`placeholder_ids`).
PLACEHOLDER_OWNERS: Mapping[str, str] = MappingProxyType({"accession_id": "patient_id", "patient_id": "patient_key"})
#: Words a table writes for no id (upper case), beside all zeros and ids without a letter or digit.
_NO_ID_WORDS: frozenset[str] = frozenset({"N/A", "NA", "NAN", "NONE", "NULL", "UNKNOWN"})
#: Distinct report texts a shingle must be held by, at least, to be template wording (:func:`template_shingles`).
TEMPLATE_MIN_TEXTS: int = 10


def _label(frame: pd.DataFrame, cross: bool) -> pd.Series:
    """The group a row is shown under: its split ('' when null), or ``corpus/split`` when two corpora are compared."""
    split = frame["split"].fillna("").astype(str)
    return frame["corpus"].astype(str) + "/" + split if cross else split


def _present(values: pd.Series) -> pd.Series:
    """Rows whose id is usable (not null, not empty)."""
    return values.notna() & (values.astype(str) != "")


def _finding(
    kind: FindingKind, ids: Iterable[str], rows: pd.DataFrame, cross: bool, score: float, what: str
) -> Finding:
    splits = set(rows["split"].dropna().astype(str))  # a null split is unknown, as in entity_overlap's count
    groups = tuple(sorted(set(_label(rows, cross))))
    severity = Severity.HIGH if len(splits) > 1 else Severity.MEDIUM
    ids = tuple(sorted(set(map(str, ids))))
    return Finding(kind, severity, ids, groups, float(score), f"{what} in {groups_text(groups)}")


def _spans(rows: pd.DataFrame, cross: bool) -> bool:
    """Whether rows are a problem to report: two splits (within) or two corpora (against)."""
    return rows["corpus" if cross else "split"].nunique() > 1


def entity_overlap(
    frames: list[pd.DataFrame], column: str, kind: FindingKind, *, cross: bool, skip: Iterable[str] = ()
) -> list[Finding]:
    """Ids of ``column`` (patient, study, accession) in two splits (and, against another corpus, in both).

    Against another corpus an id shared by the same split of both is not reported: between two
    versions of one dataset that is every sample; what leaks is an id in one corpus's train split
    and the other's test split. Ids in ``skip`` (placeholders, :func:`placeholder_ids`) name no
    one entity and are not checked.
    """
    parts = [f.loc[_present(f[column]), [column, "corpus", "split"]] for f in frames if column in f.columns]
    rows = pd.concat(parts, ignore_index=True).drop_duplicates()
    rows[column] = rows[column].astype(str)
    rows = rows[~rows[column].isin(set(skip))]
    spread = rows.groupby(column)[["split", "corpus"]].nunique()
    bad = (spread["split"] > 1) & (spread["corpus"] > 1 if cross else True)
    flagged = rows[rows[column].isin(spread.index[bad])]
    return [_finding(kind, [value], group, cross, 1.0, f"{column} {value}") for value, group in flagged.groupby(column)]


def _written_as_none(values: pd.Series) -> pd.Series:
    """Ids written as a placeholder: all zeros, no letter or digit ("-"), or a word for none ("N/A")."""
    text = values.astype(str).str.strip().str.upper()
    return text.isin(_NO_ID_WORDS) | text.map(accession_key).eq("")


def placeholder_ids(frames: list[pd.DataFrame], limit: int) -> dict[str, pd.DataFrame]:
    """Per column of :data:`PLACEHOLDER_OWNERS`, the rows (column, owner, corpus, split) of its placeholders.

    A table ctcorpus did not write (another site's corpus, an older version) may keep the
    "00000000" or "N/A" a modality writes for no accession number, or a placeholder patient id:
    every study with it then shares one id, a leak wherever two of them fell in other splits. Written
    as such, a placeholder is seen; pseudonymized, only as one id held by ``limit`` or more owners
    (patients of one accession, persons of one patient id), which no real id is.
    """
    found = {}
    for column, owner in PLACEHOLDER_OWNERS.items():
        wanted = [column, owner, "corpus", "split"]
        parts = [f.loc[_present(f[column]), f.columns.intersection(wanted)] for f in frames if column in f.columns]
        rows = pd.concat(parts, ignore_index=True)
        rows[column] = rows[column].astype(str)
        owners = rows[owner].where(_present(rows[owner])) if owner in rows.columns else pd.Series(np.nan, rows.index)
        held = owners.groupby(rows[column]).nunique()
        values = pd.Series(rows[column].unique(), dtype=object)
        bad = set(held.index[held >= limit]) | set(values[_written_as_none(values)])
        found[column] = rows.assign(**{owner: owners})[rows[column].isin(bad)]
    return found


def placeholder_findings(found: Mapping[str, pd.DataFrame], *, cross: bool) -> list[Finding]:
    """One data-quality finding per placeholder of :func:`placeholder_ids`: it names no one, and is not checked."""
    findings = []
    for column, rows in found.items():
        owner = PLACEHOLDER_OWNERS[column]
        for value, group in rows.groupby(column):
            groups = tuple(sorted(set(_label(group, cross))))
            held = group[owner].nunique()
            why = "written for none" if _written_as_none(pd.Series([value])).iat[0] else f"held by {held} {owner}s"
            entity = column.removesuffix("_id")
            findings.append(
                Finding(
                    FindingKind.PLACEHOLDER_ID,
                    Severity.MEDIUM,
                    (str(value),),
                    groups,
                    float(held),
                    f"{column} {value} is a placeholder ({why}) in {groups_text(groups)}: it names no one "
                    f"{entity}, so its {len(group)} rows are not checked for {entity} leaks",
                )
            )
    return findings


def same_person_two_ids(volumes: pd.DataFrame, *, cross: bool) -> list[Finding]:
    """One ``patient_key`` (keyed hash of name + birth date) under two patient ids: an ID-mapping error."""
    rows = volumes.loc[_present(volumes["patient_key"]) & _present(volumes["patient_id"])]
    rows = rows[["patient_key", "patient_id", "corpus", "split"]].astype(str).drop_duplicates()
    ids = rows.groupby("patient_key")["patient_id"].nunique()
    findings = []
    for _, group in rows[rows["patient_key"].isin(ids.index[ids > 1])].groupby("patient_key"):
        if cross and not _spans(group, cross):
            continue
        patients = sorted(group["patient_id"].unique())
        findings.append(
            _finding(
                FindingKind.SAME_PERSON_TWO_IDS, patients, group, cross, 1.0, f"one person as {', '.join(patients)}"
            )
        )
    return findings


def _pair_findings(
    frame: pd.DataFrame,
    pairs: pd.DataFrame,
    id_column: str,
    kinds: tuple[FindingKind, FindingKind],
    *,
    cross: bool,
    what: str,
) -> list[Finding]:
    """Findings from scored index pairs into ``frame``: one per connected cluster of copies.

    Three copies of one scan, or a copy of a scan that also has a second reconstruction, are one
    finding; its kind is ``kinds[0]`` (exact) when the cluster holds an exact pair
    (``similarity == 1``), else ``kinds[1]`` (near), and its detail says whether all, some or none
    of its pairs are exact.
    """
    if pairs.empty:
        return []
    i, j = pairs["i"].to_numpy(), pairs["j"].to_numpy()
    n = len(frame)
    _, labels = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    scores = pairs["similarity"].groupby(labels[i]).agg(["max", "min"])
    members = np.flatnonzero(np.isin(labels, scores.index))
    findings = []
    for cluster, rows in frame.iloc[members].groupby(labels[members]):
        exact = scores.at[cluster, "max"] >= 1.0
        kind = kinds[0] if exact else kinds[1]
        copies = (
            "exact copies"
            if scores.at[cluster, "min"] >= 1.0
            else "exact and near-identical copies"
            if exact
            else "near-identical"
        )
        label = f"{len(rows)} {what} ({copies})"
        findings.append(_finding(kind, rows[id_column], rows, cross, scores.at[cluster, "min"], label))
    return findings


def _keep_pairs(frame: pd.DataFrame, pairs: pd.DataFrame, *, cross: bool, same: Iterable[str]) -> pd.DataFrame:
    """Drop pairs that are not duplicates to report: same study (reconstructions), one corpus (against)."""
    if pairs.empty:
        return pairs
    codes = _codes(frame, same, cross=cross)
    keep = (codes[:, pairs["i"].to_numpy()] != codes[:, pairs["j"].to_numpy()]).all(axis=0)
    return pairs[keep].reset_index(drop=True)


def _codes(frame: pd.DataFrame, same: Iterable[str], *, cross: bool) -> np.ndarray:
    """``(m, n)`` integer codes of the columns two rows must differ in to be a pair (and ``corpus``, against).

    A missing value (null or '') is unknown, not shared: each gets a code of its own, so two
    reports without a study id, or two volumes without an array hash, still pair.
    """
    columns = [*same, "corpus"] if cross else list(same)
    unknown = -1 - np.arange(len(frame))
    return np.stack([np.where(_present(frame[c]), pd.factorize(frame[c].astype(str))[0], unknown) for c in columns])


def _forest(codes: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Edges ``(k, 2)`` of a spanning forest of the graph on ``nodes`` joining rows that differ in every code.

    A cluster is all the findings need, and k copies of one text or scan (a normal-report
    template in thousands of studies) have k^2 / 2 pairs: a breadth-first search over the rows
    not yet reached keeps the clusters with at most one edge per row.
    """
    edges, rest = [], nodes
    while len(rest):
        queue, rest = [rest[0]], rest[1:]
        while queue and len(rest):
            u = queue.pop()
            hit = (codes[:, rest] != codes[:, [u]]).all(axis=0)
            if hit.any():
                edges.append(np.column_stack([np.full(int(hit.sum()), u), rest[hit]]))
                queue.extend(rest[hit].tolist())
                rest = rest[~hit]
    return np.concatenate(edges) if edges else np.zeros((0, 2), dtype=np.int64)


def _pairs(edges: list[np.ndarray], scores: list[float]) -> pd.DataFrame:
    """Forest edges with their similarity as a pairs frame (``i``, ``j``, ``similarity``)."""
    if not edges:
        return pd.DataFrame({"i": [], "j": [], "similarity": []}).astype({"i": np.int64, "j": np.int64})
    both = np.concatenate(edges)
    similarity = np.repeat(np.asarray(scores, dtype=np.float64), [len(e) for e in edges])
    return pd.DataFrame({"i": both[:, 0], "j": both[:, 1], "similarity": similarity})


def _groups(keys: pd.Series) -> list[np.ndarray]:
    """Row positions of each non-empty key held by two rows or more."""
    frame = pd.DataFrame({"key": keys.to_numpy(), "i": np.arange(len(keys))})
    frame = frame[frame["key"].notna() & (frame["key"].astype(str) != "")]
    dup = frame[frame["key"].duplicated(keep=False)]
    return [group.to_numpy() for _, group in dup.groupby("key", sort=False)["i"]]


def _equal_pairs(frame: pd.DataFrame, key: str, *, cross: bool, same: Iterable[str]) -> pd.DataFrame:
    """Exact duplicates: rows sharing ``key`` that differ in ``same`` (and corpus, against), as forest edges."""
    codes = _codes(frame, same, cross=cross)
    edges = [e for group in _groups(frame[key]) if len(e := _forest(codes, group))]
    return _pairs(edges, [1.0] * len(edges))


def _usable_fingerprint(value: object) -> bool:
    """Whether a fingerprint can be compared: a non-empty vector of finite values.

    A NaN (a volume with one NaN voxel has an all-NaN fingerprint) would reach the corpus mean the
    projection centres on, and with it every projected row: no pair would be a candidate. Such a
    volume is still checked for exact copies.
    """
    return isinstance(value, list | tuple | np.ndarray) and len(value) > 0 and bool(np.isfinite(value).all())


def _fingerprint_use(volumes: pd.DataFrame) -> tuple[pd.Series, pd.Series, int | None]:
    """Which volumes have a usable fingerprint, each one's version, and the version compared (``None``: none usable).

    A volume without a ``fingerprint_version`` (or a null one) has version 1, the only one before
    versions were stored. Of several versions, the one this ctcorpus computes is compared, or else
    the newest held.
    """
    usable = volumes["fingerprint"].map(_usable_fingerprint).astype(bool)
    stored = volumes.get("fingerprint_version")
    versions = pd.Series(1, index=volumes.index) if stored is None else stored.fillna(1).astype(int)
    held = set(versions[usable])
    compared = None if not held else FINGERPRINT_VERSION if FINGERPRINT_VERSION in held else int(max(held))
    return usable, versions, compared


def compared_fingerprints(volumes: pd.DataFrame) -> pd.Series:
    """Volumes the near-duplicate check compares: a usable fingerprint, of one version.

    Two versions sample other anatomy, so a copy would be missed silently. A version audited
    against one built before a new fingerprint version (or a corpus assembled from both) is still
    audited: the volumes of another version are left out of this check alone (exact copies, ids,
    reports and the diff are checked as ever), named by :func:`fingerprint_findings` and counted
    as not checked by :func:`coverage`.
    """
    usable, versions, compared = _fingerprint_use(volumes)
    return usable & versions.eq(compared)


def fingerprint_findings(volumes: pd.DataFrame) -> list[Finding]:
    """One finding per corpus holding fingerprints :func:`compared_fingerprints` leaves out: how
    many, and how to have them compared.

    Rebuilding that corpus with a ctcorpus that computes the version compared recomputes its
    fingerprints from its work store (only the ``text`` stage runs again).
    """
    usable, versions, compared = _fingerprint_use(volumes)
    left = usable & versions.ne(compared)
    rebuild = (
        "with this ctcorpus, which recomputes them from its work store,"
        if compared == FINGERPRINT_VERSION
        else f"with a ctcorpus that computes version {compared} (this one computes {FINGERPRINT_VERSION})"
    )
    findings = []
    for corpus, held in versions[left].groupby(volumes.loc[left, "corpus"].astype(str)):
        numbers = tuple(str(v) for v in sorted(set(held)))
        findings.append(
            Finding(
                FindingKind.OTHER_FINGERPRINT_VERSION,
                Severity.MEDIUM,
                numbers,
                (str(corpus),),
                float(len(held)),
                f"{len(held)} volumes of {corpus} have fingerprints of version {', '.join(numbers)}, not "
                f"{compared}: they were not compared for near-duplicate volumes (exact copies still are); "
                f"rebuild {corpus} {rebuild} to have them compared",
            )
        )
    return findings


def duplicate_volumes(volumes: pd.DataFrame, config: AuditConfig, *, cross: bool) -> list[Finding]:
    """Exact copies (same HU hash) and near copies (fingerprint correlation of
    :func:`compared_fingerprints`) under different studies."""
    volumes = volumes.reset_index(drop=True)
    exact = _equal_pairs(volumes, "hu_sha256", cross=cross, same=("volume_id",))
    has_fp = np.flatnonzero(compared_fingerprints(volumes).to_numpy())
    with_fp = volumes.iloc[has_fp]
    pairs = similar_pairs(
        fingerprint_matrix(with_fp["fingerprint"], with_fp.get("fingerprint_version"), with_fp["corpus"]),
        config.volume_similarity,
        exact_limit=config.volume_exact_limit,
        candidate_threshold=config.volume_candidate_similarity,
        dims=config.projection_dims,
        seed=config.seed,
    )
    pairs = pairs.assign(i=has_fp[pairs["i"].to_numpy(np.int64)], j=has_fp[pairs["j"].to_numpy(np.int64)])
    near = _keep_pairs(volumes, pairs, cross=cross, same=("study_id", "patient_id", "hu_sha256"))
    near["similarity"] = near["similarity"].clip(upper=0.999999)  # 1.0 marks exact copies
    kinds = (FindingKind.DUPLICATE_VOLUME, FindingKind.NEAR_DUPLICATE_VOLUME)
    both = pd.concat([exact, near], ignore_index=True)
    return _pair_findings(volumes, both, "volume_id", kinds, cross=cross, what="volumes of one scan")


def _words(text: str) -> list[str]:
    """A report's words, compatibility-composed (NFKC) and case-folded.

    A copy exported decomposed (NFD: "o" + combining diaeresis, which ``\\w`` splits at) or
    upper-cased ("GRÖSSE" for "Größe", lower-cased "grösse" beside "größe") had other words at every
    umlaut or "ß": neither an exact copy nor, with a few of them, a near one.
    """
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def shingles(text: str, size: int) -> set[str]:
    """Word ``size``-grams of a report (case and punctuation ignored); a short text is one shingle."""
    words = _words(text)
    if len(words) <= size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[k : k + size]) for k in range(len(words) - size + 1)}


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def template_shingles(sets: Collection[set[str]], share: float) -> set[str]:
    """Shingles in at least ``share`` of the distinct report texts, and in :data:`TEMPLATE_MIN_TEXTS`:
    template wording.

    A sentence everyone's report holds ("No pleural effusion.") is no sign that one report was
    copied from another, yet in short reports it is half their shingles: "Emphysema. No pleural
    effusion." and "No pleural effusion." were near copies (0.5) of two patients, a leak across
    splits. In fewer texts a shingle that many hold is as likely a copy's as a template's.
    """
    held = Counter(shingle for words in sets for shingle in words)
    least = max(TEMPLATE_MIN_TEXTS, share * len(sets))
    return {shingle for shingle, texts in held.items() if texts >= least}


def report_pairs(texts: pd.Series, config: AuditConfig) -> pd.DataFrame:
    """Pairs of distinct reports whose shingle Jaccard reaches ``config.report_similarity``, enough to
    join every cluster of near copies (MinHash LSH candidates, each verified exactly).

    Texts with the same words are one text here, named by their first row: a template copied
    into k reports would make every query return all k, k^2 checks. Template wording
    (:func:`template_shingles`) is then left out: texts alike only in it are no near copies, and a
    text of nothing else is compared with none. Near copies are searched cluster by cluster: a text
    found similar joins the cluster and leaves the index, so each cluster is joined by a tree of its
    pairs, not all of them. Variants a few words apart whose wording is not template are each
    other's near copies: checking all k^2 / 2 pairs of 1,500 took two minutes and held their pairs,
    growing with the square.
    """
    firsts: dict[str, int] = {}
    for k, text in enumerate(texts):
        firsts.setdefault(" ".join(_words(text)) if isinstance(text, str) else "", k)
    sets = {k: shingles(texts.iloc[k], config.shingle_words) for words, k in firsts.items() if words}
    template = template_shingles(sets.values(), config.report_template_share)
    sets = {k: rest for k, words in sets.items() if (rest := words - template)}
    if len(sets) < 2:
        return pd.DataFrame({"i": [], "j": [], "similarity": []})
    indexed = list(sets)
    sketches = dict(
        zip(
            indexed,
            MinHash.bulk(
                [[s.encode("utf-8") for s in sets[k]] for k in indexed],
                num_perm=config.minhash_permutations,
                seed=config.seed,
            ),
        )
    )
    lsh = MinHashLSH(threshold=config.report_similarity, num_perm=config.minhash_permutations)
    with lsh.insertion_session() as session:
        for k in indexed:
            session.insert(k, sketches[k])
    found: list[tuple[int, int, float]] = []
    for start in indexed:
        if start not in lsh:  # already in a cluster, searched from there
            continue
        lsh.remove(start)
        queue = [start]
        while queue:
            k = queue.pop()
            for other in sorted(lsh.query(sketches[k])):
                score = _jaccard(sets[k], sets[other])
                if score >= config.report_similarity:
                    found.append((min(k, other), max(k, other), score))
                    lsh.remove(other)
                    queue.append(other)
    frame = pd.DataFrame(found, columns=["i", "j", "similarity"])
    return frame.astype({"i": np.int64, "j": np.int64, "similarity": np.float64})


def _text_hash(text: object) -> str:
    """sha256 of a report's words (case, spacing and punctuation ignored); '' for an empty report."""
    words = _words(text) if isinstance(text, str) else []
    return hashlib.sha256(" ".join(words).encode()).hexdigest() if words else ""


def duplicate_reports(reports: pd.DataFrame, config: AuditConfig, *, cross: bool) -> list[Finding]:
    """Reports copied to another study: identical words, or a few words changed (near-duplicate)."""
    reports = reports.reset_index(drop=True).assign(text_hash=reports["text"].map(_text_hash).to_numpy())
    exact = _equal_pairs(reports, "text_hash", cross=cross, same=("study_id",))
    # a near pair names the first report of each text: its cluster joins every copy of both texts
    members = reports.groupby("text_hash", sort=False).indices
    hashes = reports["text_hash"].to_numpy()
    codes = _codes(reports, ("study_id", "patient_id", "text_hash"), cross=cross)
    edges, scores = [], []
    for i, j, score in report_pairs(reports["text"], config).itertuples(index=False):
        found = _forest(codes, np.concatenate([members[hashes[int(i)]], members[hashes[int(j)]]]))
        if len(found):
            edges.append(found)
            scores.append(min(score, 0.999999))  # 1.0 marks identical text
    kinds = (FindingKind.DUPLICATE_REPORT, FindingKind.NEAR_DUPLICATE_REPORT)
    both = pd.concat([exact, _pairs(edges, scores)], ignore_index=True)
    return _pair_findings(reports, both, "report_id", kinds, cross=cross, what="reports of other studies")


def _checked_id(values: pd.Series, placeholders: Mapping[str, Iterable[str]], column: str) -> pd.Series:
    """Rows whose ``column`` an overlap check reads: present, and no placeholder."""
    return _present(values) & ~values.astype(str).isin(set(placeholders.get(column, ())))


def coverage(
    volumes: pd.DataFrame,
    reports: pd.DataFrame,
    corpora: Sequence[str],
    placeholders: Mapping[str, Iterable[str]] | None = None,
) -> pd.DataFrame:
    """Per corpus and leak check: the rows it could check (``checked``) of all its ``rows``, and what a row needs.

    A check passes every row it cannot read: a corpus whose volumes have no array hash or no
    finite fingerprint (a partial mapping, an older pipeline), or no ``patient_key``, has no copy
    or no same-person finding whether it holds one or not; a volume whose fingerprint is of a
    version not compared (:func:`compared_fingerprints`) is not checked for near copies; a row
    whose accession or patient id is a placeholder (``placeholders``, per column) is not checked
    for that id. The report must say what was not checked.
    """
    placeholders = placeholders or {}
    usable_fp, versions, compared = _fingerprint_use(volumes)
    rows = pd.concat([frame[["corpus", "patient_id", "study_id"]] for frame in (volumes, reports)], ignore_index=True)
    words = reports["text"].map(_text_hash).ne("")
    usable = (
        (
            FindingKind.PATIENT_ACROSS_GROUPS,
            rows,
            _checked_id(rows["patient_id"], placeholders, "patient_id"),
            "volumes and reports with a patient id (no placeholder)",
        ),
        (FindingKind.STUDY_ACROSS_GROUPS, rows, _present(rows["study_id"]), "volumes and reports with a study id"),
        (
            FindingKind.ACCESSION_ACROSS_GROUPS,
            volumes,
            _checked_id(volumes["accession_id"], placeholders, "accession_id"),
            "volumes with an accession (no placeholder)",
        ),
        (
            FindingKind.SAME_PERSON_TWO_IDS,
            volumes,
            _present(volumes["patient_key"]) & _present(volumes["patient_id"]),
            "volumes with a patient_key",
        ),
        (FindingKind.DUPLICATE_VOLUME, volumes, _present(volumes["hu_sha256"]), "volumes with an array hash"),
        (
            FindingKind.NEAR_DUPLICATE_VOLUME,
            volumes,
            usable_fp & versions.eq(compared),  # compared_fingerprints, its versions read once
            "volumes with a finite fingerprint" + (f" of version {compared}" if compared is not None else ""),
        ),
        (FindingKind.DUPLICATE_REPORT, reports, words, "reports with words"),
        (FindingKind.NEAR_DUPLICATE_REPORT, reports, words, "reports with words"),
    )
    parts = []
    for kind, frame, mask, needs in usable:
        counts = mask.groupby(frame["corpus"].to_numpy()).agg(["sum", "size"]).reindex(list(corpora), fill_value=0)
        parts.append(
            pd.DataFrame(
                {"corpus": list(corpora), "check": kind.value, "checked": counts["sum"], "rows": counts["size"],
                 "needs": needs}
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    return frame.astype({"checked": np.int64, "rows": np.int64})


def find_leaks(
    volumes: pd.DataFrame,
    reports: pd.DataFrame,
    config: AuditConfig,
    *,
    cross: bool,
    placeholders: Mapping[str, Iterable[str]] | None = None,
) -> list[Finding]:
    """All overlap, leakage and duplicate checks over frames with ``corpus`` and ``split`` columns.

    Parameters
    ----------
    volumes, reports:
        The volumes and reports tables (of one corpus, or of two concatenated), each with a
        ``corpus`` column naming the corpus of every row.
    config:
        Thresholds of the near-duplicate checks.
    cross:
        ``False``: leaks between splits of one corpus. ``True``: only what two corpora share.
    placeholders:
        Per column (``accession_id``, ``patient_id``), ids that name no one (:func:`placeholder_ids`):
        left out of that column's overlap check.

    Examples
    --------
    >>> findings = find_leaks(volumes, reports, AuditConfig(), cross=False)   # doctest: +SKIP
    """
    frames, skip = [volumes, reports], placeholders or {}
    findings = entity_overlap(
        frames, "patient_id", FindingKind.PATIENT_ACROSS_GROUPS, cross=cross, skip=skip.get("patient_id", ())
    )
    findings += entity_overlap(frames, "study_id", FindingKind.STUDY_ACROSS_GROUPS, cross=cross)
    findings += entity_overlap(
        [volumes], "accession_id", FindingKind.ACCESSION_ACROSS_GROUPS, cross=cross, skip=skip.get("accession_id", ())
    )
    findings += same_person_two_ids(volumes, cross=cross)
    findings += duplicate_volumes(volumes, config, cross=cross)
    findings += duplicate_reports(reports, config, cross=cross)
    return findings
