"""A SentencePiece-style tokenizer with a dummy prefix, as the legacy tokenizer.json of Llama-2-era
checkpoints has it (a Unigram/BPE model over text normalised by prepending "▁" and turning
spaces into "▁"), over a small vocabulary that fits the tiny test models: a text encodes
differently alone (" positive" → "▁" "▁positive") and after other text ("▁positive")."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers
from transformers import PreTrainedTokenizerFast

from tests.lm_tiny import VOCAB

#: The words of the vocabulary; each is a piece with and without the leading "▁".
SP_WORDS = (
    "Review",
    "Sentiment",
    "Answer",
    "good",
    "bad",
    "fine",
    "dull",
    "positive",
    "negative",
    "yes",
    "no",
)
#: Single characters; "a"–"f" spell the probe text of transformers' stop-string criterion.
_SYMBOLS = ("▁", "\n", ":", ".", "0", "1", "a", "b", "c", "d", "e", "f")


def dummy_prefix_tokenizer() -> PreTrainedTokenizerFast:
    """The tokenizer: ids 0–2 are <unk>/<s>/</s>, then the symbols, then "▁word" and "word" for each
    of :data:`SP_WORDS` (longer pieces score higher, so whole words win)."""
    pieces = ["<unk>", "<s>", "</s>", *_SYMBOLS]
    for word in SP_WORDS:
        pieces += [f"▁{word}", word]
    assert len(pieces) <= VOCAB
    vocab = [(p, -10.0 if len(p) == 1 or p.startswith("<") else -1.0 / len(p)) for p in pieces]
    tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>"
    )
    fast.model_max_length = 64
    return fast
