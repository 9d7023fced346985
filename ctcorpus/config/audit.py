"""Configuration of the audit stage: duplicate thresholds and report limits."""

from __future__ import annotations

from pydantic import Field

from ctcorpus.config.base import StageConfig


class AuditConfig(StageConfig):
    """Settings of the audit stage (every field described)."""

    volume_similarity: float = Field(
        0.98,
        ge=0.0,
        le=1.0,
        description=(
            "Correlation of two volume fingerprints at or above which the volumes are reported as "
            "near-duplicates (a resampled copy of one scan, or a chest CT cropped by up to 60 mm in z, "
            "scores above 0.98; synthetic phantoms of different bodies at most 0.95)."
        ),
    )
    volume_exact_limit: int = Field(
        3000,
        ge=2,
        description=(
            "Up to this many volumes, fingerprints are compared all-pairs (exact); above it, candidates "
            "come from a random projection of corpus-centred fingerprints and are then verified exactly."
        ),
    )
    volume_candidate_similarity: float = Field(
        0.5,
        ge=-1.0,
        le=1.0,
        description="Projected similarity (corpus-centred) above which a volume pair is verified exactly.",
    )
    projection_dims: int = Field(64, ge=8, description="Dimensions of the random projection used for candidates.")
    placeholder_owners: int = Field(
        3,
        ge=2,
        description=(
            "An accession_id held by this many patients or more, or a patient_id by this many persons "
            "(patient_key), is taken for a placeholder (a pseudonymized '00000000' or 'N/A' of a table "
            "ctcorpus did not write), reported as placeholder_id and not checked for leaks; an id written "
            "as a placeholder (all zeros, no letter or digit, N/A, NONE, NULL, UNKNOWN) is one whoever holds it."
        ),
    )
    report_similarity: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Jaccard similarity of word shingles (template wording left out) at or above which two reports are near-duplicates.",
    )
    report_template_share: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        description=(
            "A word shingle held by at least this share of the distinct report texts (and by 10 of them) "
            "is template wording ('No pleural effusion.'), left out of report near-duplicate similarity: "
            "reports alike only in it are no copies; exact copies are found whatever their wording."
        ),
    )
    shingle_words: int = Field(3, ge=1, description="Words per shingle for report near-duplicate detection.")
    minhash_permutations: int = Field(128, ge=16, description="MinHash permutations (LSH accuracy vs speed).")
    seed: int = Field(0, description="Seed of the MinHash permutations and random projection (reproducible audits).")
    max_listed: int = Field(
        200, ge=1, description="At most this many items listed per finding kind in the HTML report."
    )
