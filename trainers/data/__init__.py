"""Dataset tools: raw text to BERT pretraining TFRecords, images to ImageNet-schema TFRecords."""
