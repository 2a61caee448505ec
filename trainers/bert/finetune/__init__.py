"""Fine-tuning a pretrained BERT for text classification (single sentences and pairs)."""
