"""The ResNet classification experiment config (see trainers/config.py for how it is filled)."""

import dataclasses

from trainers import config as config_lib


@dataclasses.dataclass
class ResNetModelConfig:
    model_id: int = 50               # Model Garden ResNet depth: 10, 18, 26, 34, 50, 101, ...
    num_classes: int = 1000
    image_size: int = 224
    dropout_rate: float = 0.0
    use_sync_bn: bool = False        # batch statistics across replicas
    norm_momentum: float = 0.99      # batch-norm moving-average momentum


@dataclasses.dataclass
class ImageDataConfig:
    # TFRecord patterns (ImageNet schema), or "builtin": Fashion-MNIST from the Debian package
    # dataset-fashion-mnist, converted on first use and cached.
    input_path: str = ""
    label_offset: int = 0            # subtracted from stored labels (1 for 1001-class shards)
    min_crop_area: float = 0.08      # training crops cover [min_crop_area, 1] of the image
    shuffle_buffer_size: int = 10000


@dataclasses.dataclass
class ResNetTaskConfig:
    model: ResNetModelConfig = dataclasses.field(default_factory=ResNetModelConfig)
    train_data: ImageDataConfig = dataclasses.field(default_factory=ImageDataConfig)
    eval_data: ImageDataConfig = dataclasses.field(default_factory=ImageDataConfig)
    label_smoothing: float = 0.1
    use_synthetic_data: bool = False  # train on one fixed random batch (throughput only)


@dataclasses.dataclass
class ResNetExperimentConfig(config_lib.ExperimentConfig):
    task: ResNetTaskConfig = dataclasses.field(default_factory=ResNetTaskConfig)
