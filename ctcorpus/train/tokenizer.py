"""A WordPiece tokenizer trained on the corpus's own (scrubbed) train-split reports.

Training it offline on the corpus avoids downloading a pretrained vocabulary and keeps the
tokenizer reproducible from the shards alone; it is saved next to the checkpoint.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from ctcorpus.errors import TrainError
from ctcorpus.train.data import report_text

#: Special tokens; ``[PAD]`` must be id 0 (the collator pads with 0).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
TOKENIZER_FILE = "tokenizer.json"


def report_texts(shards: Iterable[Path]) -> Iterator[str]:
    """Yield the training text of every report in ``shards`` without decoding any volume."""
    for shard in shards:
        try:
            with tarfile.open(shard) as tar:
                for member in tar:
                    if member.name.endswith(".report.json"):
                        handle = tar.extractfile(member)
                        if handle is not None:
                            yield report_text(json.loads(handle.read()))
        except (tarfile.TarError, json.JSONDecodeError, OSError) as exc:
            raise TrainError(f"cannot read reports from shard: {exc}", path=shard) from exc


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a lower-casing WordPiece tokenizer on ``texts``.

    Every encoding is wrapped in ``[CLS] ... [SEP]``, so even an empty text has real tokens (a
    fully padded sequence would make the text encoder's attention undefined).

    >>> tok = train_tokenizer(["No pleural effusion.", "Lung nodule in the right lobe."], 64)
    >>> tok.token_to_id("[PAD]"), tok.encode("").tokens
    (0, ['[CLS]', '[SEP]'])
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if tokenizer.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise TrainError("the reports yield no vocabulary (all report texts empty?)")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[(name, tokenizer.token_to_id(name)) for name in ("[CLS]", "[SEP]")],
    )
    return tokenizer


def load_tokenizer(model_dir: Path) -> Tokenizer:
    """Load the tokenizer saved next to a checkpoint."""
    path = Path(model_dir) / TOKENIZER_FILE
    if not path.is_file():
        raise TrainError("no tokenizer next to the checkpoint; train the model first", path=path)
    return Tokenizer.from_file(str(path))
