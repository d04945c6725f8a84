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


if __name__ == "__main__":  # python tests/tiny_model.py DIR
    import sys

    print(save_tiny_distilbert(Path(sys.argv[1])))
