"""A tiny DistilBERT saved to disk, so the real from_pretrained path runs in seconds."""

from pathlib import Path


def save_tiny_distilbert(directory: Path, with_weights: bool = True) -> Path:
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
    return directory


if __name__ == "__main__":  # python tests/tiny_model.py DIR
    import sys

    print(save_tiny_distilbert(Path(sys.argv[1])))
