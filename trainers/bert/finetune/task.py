"""Text classification on a pretrained BERT: Model Garden's encoder and BertClassifier.

The classification head reads the [CLS] token's sequence output through a pooler of its own,
freshly initialized, as Model Garden's sentence-prediction task does by default
(`init_cls_pooler=False`): a saturated next-sentence pooler (tanh outputs of +-1 for every input,
as the recipe before issue 32 left it) leaves a head on it nothing to learn from.
`task.init_cls_pooler=true` starts it from the trained next-sentence pooler instead, as
google-research/bert's run_classifier does; on BBC News it was no better on dev than the
default (README, "Pretraining that pays off").
"""

import dataclasses
import os
import re

import tensorflow as tf
import tf_keras
from absl import logging
from official.nlp.modeling import models as nlp_models

from trainers import checkpointing
from trainers import params_record
from trainers import config as config_lib
from trainers import task as task_lib
from trainers.bert import config as bert_config
from trainers.bert import pretrained
from trainers.bert import vocab_files
from trainers.bert.finetune import data as data_lib
from trainers.bert.finetune.config import ClassificationExperimentConfig
from trainers.bert.task import WEIGHT_DECAY_EXCLUSIONS, build_encoder, initializer_of
from trainers.data import wordpiece


def resolve_pretrained(experiment, model_dir=None):
    """Fills the task's architecture, vocab, casing and labels from `trainer.init_checkpoint`
    and the training data, so that params.yaml records them; refuses a vocab or casing that
    does not belong to the checkpoint. A `model_dir` that holds checkpoints already gives them
    itself (resume, eval): its params.yaml and its copy of the vocab."""
    task = experiment.task
    if task.init_cls_pooler and (task.random_init or not experiment.trainer.init_checkpoint):
        raise ValueError("task.init_cls_pooler starts the head from a pretrained next-sentence "
                         "pooler, and there is none: it needs --init_checkpoint and "
                         "task.random_init=false.")
    if not _resume_from_records(experiment, model_dir):
        _take_from_init_checkpoint(experiment)
    if not task.vocab_file:
        raise ValueError("No vocab: pass --init_checkpoint (a trainers.bert model_dir, "
                         "checkpoint or export), or set task.vocab_file and task.model.")
    if task.do_lower_case is None:
        raise ValueError(f"It is not known whether {task.vocab_file}'s text was lower-cased; "
                         "set task.do_lower_case to true or false as in pretraining.")
    vocab_size = len(wordpiece.read_vocab(task.vocab_file))
    if vocab_size > task.model.vocab_size:
        raise ValueError(f"The vocab {task.vocab_file} has {vocab_size} tokens but the encoder's "
                         f"embedding has {task.model.vocab_size} rows: the vocab does not "
                         "belong to this encoder. Use the vocab it was pretrained with.")
    for mode, data in (("train", task.train_data), ("eval", task.eval_data)):
        if data.max_seq_length > task.model.max_position_embeddings:
            raise ValueError(f"task.{mode}_data.max_seq_length={data.max_seq_length} exceeds the "
                             "encoder's max_position_embeddings="
                             f"{task.model.max_position_embeddings}; lower it.")
    if not task.labels:
        task.labels = sorted(set(data_lib.read(task.train_data).labels))
    if len(task.labels) < 2:
        raise ValueError(f"task.labels {task.labels}: classification needs at least two "
                         "classes.")


def _take_from_init_checkpoint(experiment):
    """The architecture, vocab and casing of `trainer.init_checkpoint`, if one is given."""
    task = experiment.task
    if experiment.trainer.init_checkpoint:
        source = pretrained.locate(experiment.trainer.init_checkpoint)
        # The architecture is the checkpoint's; dropout stays a fine-tuning choice.
        task.model = dataclasses.replace(
            source.model, dropout_rate=task.model.dropout_rate,
            attention_dropout_rate=task.model.attention_dropout_rate)
        if source.vocab_file:
            if task.vocab_file and not _same_vocab(task.vocab_file, source.vocab_file):
                raise ValueError(
                    f"task.vocab_file {task.vocab_file} is not the vocab {source.vocab_file} "
                    f"that {experiment.trainer.init_checkpoint} was pretrained with: token ids "
                    "would mean other words to the encoder. Leave task.vocab_file empty to use "
                    "the checkpoint's.")
            task.vocab_file = source.vocab_file
        elif not task.vocab_file:
            raise ValueError(
                f"{experiment.trainer.init_checkpoint} records no vocab (its pretraining data "
                "had none beside it, or has moved): set task.vocab_file to the vocab that data "
                "was made with.")
        if source.do_lower_case is not None:
            if task.do_lower_case not in (None, source.do_lower_case):
                raise ValueError(
                    f"task.do_lower_case={task.do_lower_case} but "
                    f"{experiment.trainer.init_checkpoint} was pretrained on text with "
                    f"do_lower_case={source.do_lower_case}; leave it unset.")
            task.do_lower_case = source.do_lower_case
    elif task.random_init:
        raise ValueError("task.random_init takes the architecture and vocab of "
                         "--init_checkpoint, and none is given; pass one.")


def _same_vocab(a, b):
    return a == b or wordpiece.read_vocab(a) == wordpiece.read_vocab(b)


def _resume_from_records(experiment, model_dir):
    """Takes the architecture, vocab, casing and labels of a fine-tuning model_dir that holds
    checkpoints from what it recorded, so that resuming or evaluating it needs neither the
    pretraining run nor the export; False if `model_dir` holds none."""
    if not model_dir or not checkpointing.checkpoint_steps(model_dir):
        return False
    previous = params_record.ParamsRecord(model_dir).previous()
    if not previous or "task" not in previous:
        return False
    recorded = config_lib.merge(ClassificationExperimentConfig(), previous).task
    task = experiment.task
    copy = os.path.join(model_dir, vocab_files.VOCAB_FILE)
    # Runs from before the copy was recorded read the vocab where params.yaml says.
    vocab = copy if tf.io.gfile.exists(copy) else recorded.vocab_file
    if task.vocab_file and not _same_vocab(task.vocab_file, vocab):
        raise ValueError(f"task.vocab_file {task.vocab_file} is not the vocab {vocab} that the "
                         f"checkpoints in {model_dir} were trained with; leave it empty.")
    if task.do_lower_case not in (None, recorded.do_lower_case):
        raise ValueError(f"task.do_lower_case={task.do_lower_case} but the checkpoints in "
                         f"{model_dir} were trained with do_lower_case="
                         f"{recorded.do_lower_case}; leave it unset.")
    task.model = dataclasses.replace(
        recorded.model, dropout_rate=task.model.dropout_rate,
        attention_dropout_rate=task.model.attention_dropout_rate)
    task.vocab_file, task.do_lower_case = vocab, recorded.do_lower_case
    # The order of the labels fixes the class ids the checkpoints' classifier was trained on.
    if task.labels and recorded.labels and list(task.labels) != list(recorded.labels):
        raise ValueError(f"task.labels {list(task.labels)} but the checkpoints in {model_dir} "
                         f"were trained with {list(recorded.labels)} (the order fixes the class "
                         "ids); leave it empty.")
    task.labels = task.labels or recorded.labels
    logging.info("Architecture, vocab (%s), casing and labels from %s, which holds checkpoints "
                 "already.", vocab, model_dir)
    return True


# Model Garden's BertEncoderV2 variable paths.
_ENCODER_LAYER = re.compile(r"/transformer/layer_(\d+)/")
_EMBEDDING = re.compile(r"/(word_embeddings|position_embedding|type_embeddings|embeddings)/")


class ClassificationTask(task_lib.Task):

    def __init__(self, task_config):
        if task_config.model.size not in bert_config.SIZES:
            raise ValueError(f"Unknown BERT size {task_config.model.size!r}; choose one of "
                             f"{list(bert_config.SIZES)}.")
        self.config = task_config
        self._inputs = {}

    # ------------------------------------------------------------------------------ model
    def build_model(self):
        model_config = self.config.model
        initializer = initializer_of(model_config)
        model = nlp_models.BertClassifier(
            network=build_encoder(model_config, initializer),
            num_classes=len(self.config.labels), initializer=initializer,
            dropout_rate=model_config.dropout_rate, use_encoder_pooler=False)
        seq = self.config.train_data.max_seq_length
        # A training-mode call also creates the dropout layers' random generators, so that
        # checkpoints carry their state.
        model({name: tf.zeros([1, seq], tf.int32) for name in data_lib.FEATURES},
              training=True)
        return model

    def initialize(self, model, init_checkpoint):
        if self.config.random_init:
            logging.info("task.random_init: the encoder starts from random weights, not from "
                         "%s.", init_checkpoint)
            return
        source = pretrained.locate(init_checkpoint)
        checkpoint = source.weights_checkpoint()
        try:
            source.restore(model.checkpoint_items["encoder"], checkpoint)
        except (ValueError, AssertionError) as e:
            raise ValueError(f"The encoder of {checkpoint} does not fit "
                             f"task.model: {e}") from None
        logging.info("Encoder weights from %s.", checkpoint)
        if self.config.init_cls_pooler:
            # restore() leaves the trained next-sentence pooler in the encoder's pooler layer.
            encoder = model.checkpoint_items["encoder"]
            model.checkpoint_items["sentence_prediction.pooler_dense"].set_weights(
                encoder.pooler_layer.get_weights())
            logging.info("task.init_cls_pooler: the classification head's pooler starts from "
                         "the next-sentence pooler of %s.", checkpoint)

    def weight_decay_exclusions(self):
        return list(WEIGHT_DECAY_EXCLUSIONS)

    def layer_depths(self):
        """The embeddings at depth 0, encoder layer i at i + 1, the rest (the classification
        head; the encoder's own pooler, unused) at the top, as BEiT counts (ELECTRA's code puts
        the head one step further up)."""
        top = bert_config.SIZES[self.config.model.size][0] + 1

        def depth_of(path):
            layer = _ENCODER_LAYER.search(path)
            if layer:
                return int(layer.group(1)) + 1
            return 0 if _EMBEDDING.search(path) else top
        return depth_of, top

    def model_dir_records(self):
        """The vocab and casing, copied: resuming and evaluating the run then need neither the
        pretraining run nor the export it started from."""
        with tf.io.gfile.GFile(self.config.vocab_file) as f:
            vocab = f.read()
        return {vocab_files.VOCAB_FILE: vocab,
                vocab_files.TOKENIZATION_FILE: vocab_files.tokenization_record(
                    self.config.do_lower_case)}

    # ------------------------------------------------------------------------------ data
    def inputs(self, mode):
        if mode not in self._inputs:
            data = self.config.train_data if mode == "train" else self.config.eval_data
            vocab = wordpiece.read_vocab(self.config.vocab_file)
            self._inputs[mode] = data_lib.ClassificationInput(
                data_lib.read(data), vocab, self.config.do_lower_case, self.config.labels,
                data.max_seq_length)
        return self._inputs[mode]

    def train_stream(self):
        """One entry for the table the examples are read into, whatever files (1,699 articles
        for bbc_news:train) it came from and wherever they are installed."""
        inputs = self.inputs("train")
        return {"table": {"examples": int(inputs.num_examples), "sha256": inputs.digest}}

    def model_inputs(self, features):
        return {name: features[name] for name in data_lib.FEATURES}

    # ---------------------------------------------------------------------------- losses
    def loss_normalizers(self, features):
        return {"classification": tf.cast(tf.shape(features[data_lib.LABEL_KEY])[0],
                                          tf.float32)}

    @staticmethod
    def _per_example_loss(features, outputs):
        return tf_keras.losses.sparse_categorical_crossentropy(
            features[data_lib.LABEL_KEY], tf.cast(outputs, tf.float32), from_logits=True)

    def loss_sums(self, features, outputs):
        return {"classification": tf.reduce_sum(self._per_example_loss(features, outputs))}

    # --------------------------------------------------------------------------- metrics
    def build_metrics(self):
        return [tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                tf_keras.metrics.Mean(name="loss")]

    def update_metrics(self, metrics, features, outputs):
        accuracy, loss = metrics
        real = features["is_real_example"]
        accuracy.update_state(features[data_lib.LABEL_KEY], tf.cast(outputs, tf.float32),
                              sample_weight=real)
        loss.update_state(self._per_example_loss(features, outputs), sample_weight=real)
