"""Fixed inputs: synthetic token ids from a fixed seed, or real text through the tokenizer."""

from __future__ import annotations

import time

SEED = 1234
SENTENCES = [
    "the movie was a delight from start to finish",
    "a tedious, overlong and joyless exercise",
    "benchmarks are only as good as the rules they follow",
    "the service was slow but the food made up for it",
    "i would not recommend this product to anyone",
    "an honest, moving and beautifully acted film",
    "the update broke everything that used to work",
    "quietly brilliant and never in a hurry",
]


class NoTokenizer(Exception):
    pass


def synthetic(torch, batch_size: int, seq_len: int, vocab_size: int, device) -> dict:
    gen = torch.Generator().manual_seed(SEED)
    low = 1 if vocab_size > 1 else 0
    ids = torch.randint(low, max(vocab_size, low + 1), (batch_size, seq_len), generator=gen, dtype=torch.long)
    mask = torch.ones((batch_size, seq_len), dtype=torch.long)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def from_text(torch, tokenizer_source: str | None, batch_size: int, seq_len: int, device, repeats: int = 5,
              left_pad: bool = False):
    """Tokenized sentences (padded/truncated to seq_len) and the mean tokenization time in ms."""
    if tokenizer_source is None:
        raise NoTokenizer("this model has no tokenizer here: use --input synthetic")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(tokenizer_source, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise NoTokenizer(f"no tokenizer for {tokenizer_source}: {str(exc).splitlines()[0]}") from None
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # causal LM tokenizers (GPT-2) have no pad token of their own
    if left_pad:  # a prompt to generate from ends in its text, not in padding
        tok.padding_side = "left"
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(batch_size)]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        enc = tok(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
        times.append((time.perf_counter_ns() - t0) / 1e6)
    keep = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    return keep, sum(times) / len(times)
