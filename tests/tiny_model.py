"""A tiny DistilBERT saved to disk, so the real from_pretrained path runs in seconds."""

from pathlib import Path

WORDS = ["the", "movie", "was", "a", "delight", "from", "start", "to", "finish", "slow", "food", "service", "film"]


def save_tiny_tokenizer(directory: Path) -> None:
    """A WordPiece tokenizer over a handful of words, saved beside the model."""
    from transformers import DistilBertTokenizerFast

    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    DistilBertTokenizerFast(vocab_file=str(vocab)).save_pretrained(directory)


def save_tiny_distilbert(directory: Path, with_weights: bool = True, tokenizer: bool = False) -> Path:
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    directory.mkdir(parents=True, exist_ok=True)
    config = DistilBertConfig(vocab_size=128, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(config)
    if with_weights:
        model.save_pretrained(directory)
    else:
        config.save_pretrained(directory)
    if tokenizer:
        save_tiny_tokenizer(directory)
    return directory


def save_tiny_gpt2(directory: Path) -> Path:
    """A tiny causal LM (GPT-2 architecture, 64 positions) with its weights."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    directory.mkdir(parents=True, exist_ok=True)
    config = GPT2Config(vocab_size=128, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


if __name__ == "__main__":  # python tests/tiny_model.py DIR
    import sys

    print(save_tiny_distilbert(Path(sys.argv[1])))
