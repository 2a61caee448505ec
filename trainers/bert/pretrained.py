"""What fine-tuning starts from: the encoder of a trainers.bert pretraining run, or of its export.

`locate(path)` takes a pretraining model_dir, one of its checkpoints, or a folder written by
`python -m trainers.bert.export`, and answers what a fine-tuning run needs to agree with
pretraining: the encoder's architecture, the vocab and casing its data was tokenized with, and
where the trained weights are.
"""

import dataclasses
import os
import typing

import tensorflow as tf
import yaml
from absl import logging

from trainers import checkpointing
from trainers import params_record
from trainers import config as config_lib
from trainers import storage
from trainers.bert import builtin_data
from trainers.bert import config as bert_config
from trainers.bert import vocab_files
from trainers.bert.task import BertPretrainingTask
from trainers.data import files as files_lib

# The export's files (trainers.bert.export).
CHECKPOINT_NAME = "bert_model.ckpt"
ENCODER_CONFIG_FILE = "encoder_config.yaml"


def encoder_config(model_config):
    """Model Garden's EncoderConfig for the encoder our tasks build (approximate GELU)."""
    num_layers, hidden = bert_config.SIZES[model_config.size]
    return {"type": "bert_v2", "bert_v2": {
        "vocab_size": model_config.vocab_size, "hidden_size": hidden, "num_layers": num_layers,
        "num_attention_heads": max(1, hidden // 64), "intermediate_size": 4 * hidden,
        "hidden_activation": "gelu", "dropout_rate": model_config.dropout_rate,
        "attention_dropout_rate": model_config.attention_dropout_rate,
        "max_position_embeddings": model_config.max_position_embeddings,
        "type_vocab_size": model_config.type_vocab_size,
        "initializer_range": model_config.initializer_range}}


def model_config_of(encoder_yaml, source):
    """The BertModelConfig back from an export's `encoder_config.yaml` contents."""
    encoder = (encoder_yaml or {}).get("bert_v2") or {}
    shape = (encoder.get("num_layers"), encoder.get("hidden_size"))
    sizes = {v: k for k, v in bert_config.SIZES.items()}
    if shape not in sizes:
        raise ValueError(f"{source} describes an encoder of {shape[0]} layers and hidden size "
                         f"{shape[1]}, not one of the BERT sizes {list(bert_config.SIZES)}; "
                         "fine-tune it with the tool that pretrained it.")
    return bert_config.BertModelConfig(
        size=sizes[shape], vocab_size=encoder["vocab_size"],
        max_position_embeddings=encoder["max_position_embeddings"],
        type_vocab_size=encoder["type_vocab_size"], dropout_rate=encoder["dropout_rate"],
        attention_dropout_rate=encoder["attention_dropout_rate"],
        initializer_range=encoder["initializer_range"])


def pretraining_experiment(model_dir):
    """The BertExperimentConfig a pretraining model_dir was written with."""
    params = params_record.ParamsRecord(model_dir).previous()
    if params is None:
        raise FileNotFoundError(f"{model_dir} holds no readable params.yaml: give the model_dir "
                                "of a trainers.bert run.")
    return config_lib.merge(bert_config.BertExperimentConfig(), params)


def _data_directory(data_config):
    directory = builtin_data.directory_of(
        data_config.input_path, data_config.max_seq_length, data_config.max_predictions_per_seq,
        pair_task=data_config.pair_task, do_whole_word_mask=data_config.do_whole_word_mask)
    if directory:
        return directory
    return os.path.dirname(files_lib.expand_patterns(data_config.input_path)[0])


def pretraining_tokenization(model_dir, experiment):
    """(vocab path or "", do_lower_case or None) a pretraining model_dir was trained with: the
    copies it records (vocab.txt, tokenization.json), else, for a run from before it recorded
    them, what lies beside its training data if that is still where params.yaml says."""
    recorded = os.path.join(model_dir, vocab_files.VOCAB_FILE)
    if tf.io.gfile.exists(recorded):
        return recorded, vocab_files.recorded_lower_case(model_dir)
    try:
        directory = _data_directory(experiment.task.train_data)
    except (ValueError, FileNotFoundError):  # moved data
        return "", None
    vocab, do_lower_case, _ = vocab_files.data_tokenization(directory)
    if vocab:
        logging.info("%s records no vocab (a run from before it did): using %s beside its "
                     "training data.", model_dir, vocab)
    return vocab, do_lower_case


def trained_pretrainer(experiment, checkpoint):
    """The pretraining model restored from `checkpoint`, its encoder's pooler replaced by the
    trained next-sentence pooler (the encoder's own gets no gradient in pretraining)."""
    model = BertPretrainingTask(experiment.task).build_model()
    tf.train.Checkpoint(model=model).read(checkpoint).expect_partial() \
        .assert_existing_objects_matched()
    head = next(h for h in model.classification_heads if h.name == "next_sentence")
    model.encoder_network.pooler_layer.set_weights(head.dense.get_weights())
    return model


@dataclasses.dataclass
class PretrainedEncoder:
    """A pretrained encoder as fine-tuning sees it."""
    model: bert_config.BertModelConfig  # the encoder's architecture
    vocab_file: str                     # the vocab its pretraining data was tokenized with;
    #                                     "": the source does not say
    do_lower_case: typing.Optional[bool]  # None: the source does not say
    checkpoint: str = ""                # where the weights are; "": model_dir's newest whole one
    experiment: typing.Any = None       # the pretraining config (None for an export)
    model_dir: str = ""                 # the pretraining run, when `checkpoint` is ""

    def weights_checkpoint(self):
        """The checkpoint the weights are read from. A model_dir's newest whole checkpoint is
        found here, when the weights are wanted, because finding it verifies every file: the
        architecture, vocab and casing, wanted on every start, need none of that."""
        return self.checkpoint or checkpointing.newest_whole_checkpoint(self.model_dir, 0,
                                                                        move_broken=False)

    def restore(self, encoder, checkpoint):
        """Loads the pretrained weights (pooler included) from `checkpoint` (see
        `weights_checkpoint`) into `encoder`, an encoder built from `self.model`."""
        if self.experiment is None:
            tf.train.Checkpoint(encoder=encoder).read(checkpoint).expect_partial() \
                .assert_existing_objects_matched()
            return
        pretrainer = trained_pretrainer(self.experiment, checkpoint)
        encoder.set_weights(pretrainer.encoder_network.get_weights())


def locate(path):
    """The PretrainedEncoder at `path`: an export folder, a pretraining model_dir (its newest
    whole checkpoint), or a checkpoint prefix inside one."""
    storage.check_path("init_checkpoint", path)
    if (tf.io.gfile.exists(os.path.join(path, ENCODER_CONFIG_FILE))
            and storage.index_exists(os.path.join(path, CHECKPOINT_NAME))):
        return _from_export(path)
    if tf.io.gfile.exists(os.path.join(path, params_record.PARAMS_FILE)):
        if not checkpointing.checkpoint_steps(path):
            raise FileNotFoundError(f"init_checkpoint {path} holds no checkpoint yet; pretrain "
                                    "first.")
        return _from_pretraining(path)
    model_dir = os.path.dirname(path.rstrip("/"))
    if storage.index_exists(path) and tf.io.gfile.exists(
            os.path.join(model_dir, params_record.PARAMS_FILE)):
        return _from_pretraining(model_dir, path)
    raise FileNotFoundError(
        f"init_checkpoint {path} is neither a trainers.bert model_dir, a checkpoint in one "
        "(model_dir/ckpt-N), nor an export folder (python -m trainers.bert.export).")


def _from_export(path):
    with tf.io.gfile.GFile(os.path.join(path, ENCODER_CONFIG_FILE)) as f:
        model = model_config_of(yaml.safe_load(f), os.path.join(path, ENCODER_CONFIG_FILE))
    return PretrainedEncoder(model=model, vocab_file=os.path.join(path, vocab_files.VOCAB_FILE),
                             do_lower_case=vocab_files.recorded_lower_case(path),
                             checkpoint=os.path.join(path, CHECKPOINT_NAME))


def _from_pretraining(model_dir, checkpoint=""):
    experiment = pretraining_experiment(model_dir)
    vocab, do_lower_case = pretraining_tokenization(model_dir, experiment)
    return PretrainedEncoder(model=experiment.task.model, vocab_file=vocab,
                             do_lower_case=do_lower_case, checkpoint=checkpoint,
                             experiment=experiment, model_dir=model_dir)
