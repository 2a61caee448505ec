"""The BERT fine-tuning (text classification) experiment config."""

import dataclasses
import typing

from trainers import config as config_lib
from trainers.bert import config as bert_config


@dataclasses.dataclass
class ClassificationDataConfig:
    # GLUE-style .tsv (or .csv) files with a header row (comma list, globs, gs://), or a
    # built-in task's split NAME:SPLIT, e.g. "bbc_news:train", "reuters_r8:dev" or
    # "health_tweets:test" (trainers/bert/finetune/builtin_tasks.py).
    input_path: str = ""
    text_column: str = "sentence"       # GLUE's single-sentence column name (SST-2, CoLA)
    text_b_column: str = ""             # a pair's second text (e.g. "sentence2"); "": none
    label_column: str = "label"
    max_seq_length: int = 128           # [CLS] a [SEP] (b [SEP]); longer texts are cut


@dataclasses.dataclass
class ClassificationTaskConfig:
    # The encoder's architecture, vocab and casing are those of trainer.init_checkpoint (a
    # trainers.bert model_dir, one of its checkpoints, or an export) and are recorded here; set
    # them yourself only to train without one.
    model: bert_config.BertModelConfig = dataclasses.field(
        default_factory=bert_config.BertModelConfig)
    vocab_file: str = ""
    do_lower_case: typing.Optional[bool] = None
    # init_checkpoint's architecture, vocab and casing, but random weights: the baseline that
    # shows what pretraining is worth.
    random_init: bool = False
    # Start the classification head's pooler (dense + tanh on [CLS]) from the pretraining's
    # trained next-sentence pooler, as google-research/bert's run_classifier does; false: a fresh
    # one (Model Garden's sentence_prediction default; same option name there).
    init_cls_pooler: bool = False
    labels: typing.List[str] = dataclasses.field(default_factory=list)  # []: sorted train labels
    train_data: ClassificationDataConfig = dataclasses.field(
        default_factory=ClassificationDataConfig)
    eval_data: ClassificationDataConfig = dataclasses.field(
        default_factory=ClassificationDataConfig)


@dataclasses.dataclass
class ClassificationExperimentConfig(config_lib.ExperimentConfig):
    task: ClassificationTaskConfig = dataclasses.field(default_factory=ClassificationTaskConfig)
