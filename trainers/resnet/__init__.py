"""ResNet image classification task: Model Garden's ResNet on ImageNet-schema TFRecords."""
