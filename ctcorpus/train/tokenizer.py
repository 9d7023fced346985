"""A WordPiece tokenizer built from the corpus's own (scrubbed) train-split reports.

Building it offline from the corpus avoids downloading a pretrained vocabulary and makes the
tokenizer reproducible from the shards alone; it is saved in the checkpoint and next to it.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

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
    """Build a lower-casing WordPiece tokenizer from ``texts``: their characters, then their most
    frequent words whole; the same texts always give the same tokenizer.

    The tokenizers library's WordPieceTrainer picks different merges from call to call (hash-map
    order breaks ties: huggingface/tokenizers#1794), so two trainings on one corpus gave two token
    vocabularies and two different models. The vocabulary is chosen here; the library normalizes,
    splits and matches. Every encoding is wrapped in ``[CLS] ... [SEP]``, so even an empty text has
    real tokens (a fully padded sequence would make the text encoder's attention undefined).

    >>> tok = train_tokenizer(["No pleural effusion.", "Lung nodule in the right lobe, no effusion."], 40)
    >>> tok.token_to_id("[PAD]"), tok.encode("").tokens, tok.encode("no effusion").tokens
    (0, ['[CLS]', '[SEP]'], ['[CLS]', 'no', 'effusion', '[SEP]'])
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    words: Counter[str] = Counter()
    for text in texts:
        normalized = tokenizer.normalizer.normalize_str(text)
        words.update(word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized))
    if not words:
        raise TrainError("the reports yield no vocabulary (all report texts empty?)")
    # every character, first in a word and inside one ("##e"), so no known character is [UNK]
    alphabet = sorted({w[0] for w in words} | {f"##{c}" for w in words for c in w[1:]})
    whole = [w for w, _ in sorted(words.items(), key=lambda item: (-item[1], item[0])) if len(w) > 1]
    budget = max(vocab_size - len(SPECIAL_TOKENS) - len(alphabet), 0)
    vocabulary = (*SPECIAL_TOKENS, *alphabet, *whole[:budget])
    tokenizer.model = models.WordPiece({token: i for i, token in enumerate(vocabulary)}, unk_token="[UNK]")
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
