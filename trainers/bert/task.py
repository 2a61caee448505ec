"""BERT pretraining: Model Garden's encoder and pretrainer, masked-LM + next-sentence losses."""

import json
import os

import tensorflow as tf
import tf_keras
from absl import logging
from official.nlp.modeling import layers as nlp_layers
from official.nlp.modeling import models as nlp_models
from official.nlp.modeling import networks as nlp_networks

from trainers import task as task_lib
from trainers.bert import builtin_data
from trainers.bert import config as bert_config
from trainers.bert import probe as probe_lib
from trainers.bert import vocab_files
from trainers.bert.input_pipeline import PretrainingInput
from trainers.data import create_pretraining_data as creator
from trainers.data import instances
from trainers.data import wordpiece

# Variables without weight decay or layer adaptation, as in google-research/bert's AdamW and the
# LAMB paper: layer norms and biases. Model Garden names layer norms "..._layer_norm/gamma".
WEIGHT_DECAY_EXCLUSIONS = ["LayerNorm", "layer_norm", "bias"]

POOLED_OUTPUT = "next_sentence_pooled"
# How create_pretraining_data makes pairs and masks by default (google-research/bert's way).
DATA_DEFAULTS = {key: getattr(creator.CreationOptions, key)
                 for key in ("pair_task", "do_whole_word_mask")}
# A tanh output beyond this passes almost no gradient (1 - 0.99^2 = 2%): the share of such
# outputs is the pooler's saturation.
SATURATED = 0.99
# Eval saturation above this is warned about: at initialization it is 0, and a pooler with most
# outputs at +-1 gives the same features for every input (README command 1 at LAMB 0.03: all).
SATURATION_LIMIT = 0.5


class NextSentenceHead(nlp_layers.ClassificationHead):
    """Model Garden's classification head that also returns its pooled (dense + tanh) [CLS]
    features, so that eval can tell a saturated pooler; same variables and checkpoints."""

    def call(self, features, only_project=False):
        pooled = super().call(features, only_project=True)
        if only_project:
            return pooled
        return {self.name: self.out_proj(self.dropout(pooled)), POOLED_OUTPUT: pooled}


def initializer_of(model_config):
    return tf_keras.initializers.TruncatedNormal(stddev=model_config.initializer_range)


def build_encoder(model_config, initializer):
    """Model Garden's BERT encoder (v2) of `model_config`'s size: what pretraining trains and
    fine-tuning starts from."""
    num_layers, hidden = bert_config.SIZES[model_config.size]
    return nlp_networks.BertEncoderV2(
        vocab_size=model_config.vocab_size, hidden_size=hidden, num_layers=num_layers,
        num_attention_heads=max(1, hidden // 64), inner_dim=4 * hidden,
        max_sequence_length=model_config.max_position_embeddings,
        type_vocab_size=model_config.type_vocab_size,
        output_dropout=model_config.dropout_rate,
        attention_dropout=model_config.attention_dropout_rate,
        initializer=initializer)


class BertPretrainingTask(task_lib.Task):

    def __init__(self, task_config):
        self.config = task_config
        if task_config.model.size not in bert_config.SIZES:
            raise ValueError(f"Unknown BERT size {task_config.model.size!r}; choose one of "
                             f"{list(bert_config.SIZES)}.")
        for mode in ("train", "eval"):
            pair_task = self._data_config(mode).pair_task
            if pair_task not in instances.PAIR_TASKS:
                raise ValueError(f"task.{mode}_data.pair_task={pair_task!r} is not one of "
                                 f"{list(instances.PAIR_TASKS)}.")
        if task_config.train_data.pair_task != task_config.eval_data.pair_task:
            raise ValueError(
                f"task.train_data.pair_task={task_config.train_data.pair_task!r} but "
                f"task.eval_data.pair_task={task_config.eval_data.pair_task!r}: the eval would "
                "score another pair task than the one trained; set both alike.")
        if task_config.probe_tasks:
            probe_lib.check_task_names(task_config.probe_tasks)
        if (task_config.probe_tasks and task_config.probe_max_seq_length
                > task_config.model.max_position_embeddings):
            raise ValueError(f"task.probe_max_seq_length={task_config.probe_max_seq_length} is "
                             "more than the encoder's task.model.max_position_embeddings="
                             f"{task_config.model.max_position_embeddings}; lower it.")
        self._inputs = {}
        self._probe = None

    # ------------------------------------------------------------------------------ model
    def build_model(self):
        model_config = self.config.model
        hidden = bert_config.SIZES[model_config.size][1]
        initializer = initializer_of(model_config)
        encoder = build_encoder(model_config, initializer)
        model = nlp_models.BertPretrainerV2(
            encoder_network=encoder, mlm_initializer=initializer,
            classification_heads=[NextSentenceHead(
                inner_dim=hidden, num_classes=2, dropout_rate=model_config.dropout_rate,
                initializer=initializer, name="next_sentence")])
        seq = self.config.train_data.max_seq_length
        predictions = self.config.train_data.max_predictions_per_seq
        # A training-mode call creates the dropout layers' random generators too, so that
        # checkpoints can carry their state.
        model({
            "input_word_ids": tf.zeros([1, seq], tf.int32),
            "input_mask": tf.ones([1, seq], tf.int32),
            "input_type_ids": tf.zeros([1, seq], tf.int32),
            "masked_lm_positions": tf.zeros([1, predictions], tf.int32),
        }, training=True)
        return model

    def weight_decay_exclusions(self):
        return list(WEIGHT_DECAY_EXCLUSIONS)

    def initialize(self, model, init_checkpoint):
        self._check_init_vocab(init_checkpoint)
        super().initialize(model, init_checkpoint)

    def _check_init_vocab(self, init_checkpoint):
        """Continuing a pretraining run on data tokenized with another vocab would give its token
        ids other words: refused when the run records its vocab and the data's is known, from
        task.vocab_file or beside the shards (tokenization())."""
        model_dir = (init_checkpoint if tf.io.gfile.isdir(init_checkpoint)
                     else os.path.dirname(init_checkpoint))
        recorded = os.path.join(model_dir, vocab_files.VOCAB_FILE)
        if not tf.io.gfile.exists(recorded):
            return
        data_vocab = self.tokenization()[0]
        if not data_vocab:
            return
        if wordpiece.read_vocab(recorded) != wordpiece.read_vocab(data_vocab):
            raise ValueError(f"init_checkpoint {init_checkpoint} was pretrained with the vocab "
                             f"{recorded}, and the training data was made with {data_vocab}, "
                             "another: token ids would mean other words. Make the data with "
                             f"--vocab_file={recorded}" + (
                                 ", or set task.vocab_file to the vocab it was made with."
                                 if self.config.vocab_file else "."))

    # ------------------------------------------------------------------------------ data
    def _data_config(self, mode):
        return self.config.train_data if mode == "train" else self.config.eval_data

    def inputs(self, mode):
        """The validated PretrainingInput of a mode, made once."""
        if mode not in self._inputs:
            data = self._data_config(mode)
            patterns = data.input_path
            if not patterns:
                raise ValueError(f"task.{mode}_data.input_path is empty: give TFRecord patterns, "
                                 "`builtin` for the built-in corpus, or `bbc_news:train`.")
            directory = builtin_data.directory_of(
                patterns, data.max_seq_length, data.max_predictions_per_seq,
                pair_task=data.pair_task, do_whole_word_mask=data.do_whole_word_mask)
            if directory:
                split = "train" if mode == "train" else "eval"
                patterns = os.path.join(directory, f"{split}-*.tfrecord")
            self._inputs[mode] = PretrainingInput(
                patterns, data.max_seq_length, data.max_predictions_per_seq,
                shuffle_buffer_size=data.shuffle_buffer_size)
            self._check_description(mode, self._inputs[mode].files[0])
        return self._inputs[mode]

    def _check_description(self, mode, first_file):
        """Data made by create_pretraining_data says its vocab size, which the model must cover,
        and how its pairs and masks were made, which the data config must say alike (the eval
        would otherwise name one task and score another). Shards without a description
        (google-research/bert's) are taken for the defaults: random-next pairs, no whole-word
        masking; a pretraining_data.json of only {"settings": {"pair_task": ...}} declares
        them otherwise."""
        data = self._data_config(mode)
        directory = os.path.dirname(first_file)
        path = os.path.join(directory, creator.DATA_DESCRIPTION_FILE)
        made = dict(DATA_DEFAULTS)
        described = tf.io.gfile.exists(path)
        if described:
            with tf.io.gfile.GFile(path) as f:
                description = json.load(f)
            if "vocab_size" in description:
                self._check_vocab(description["vocab_size"])
            made.update({k: v for k, v in description.get("settings", {}).items() if k in made})
        for key, value in made.items():
            if getattr(data, key) != value:
                how = ("were made with" if described else
                       "have no pretraining_data.json, so they are taken to be made with")
                raise ValueError(
                    f"task.{mode}_data.{key}={getattr(data, key)!r} but the shards in {directory} "
                    f"{how} {key}={value!r}: set task.train_data.{key} and task.eval_data.{key} "
                    f"to {value!r} (train and eval shards made alike), or make shards with "
                    f"`python -m trainers.data.create_pretraining_data --{key}=...`.")

    def _check_vocab(self, data_vocab_size):
        if data_vocab_size > self.config.model.vocab_size:
            raise ValueError(f"The data's vocab has {data_vocab_size} tokens but "
                             f"task.model.vocab_size={self.config.model.vocab_size}; set "
                             f"task.model.vocab_size >= {data_vocab_size}.")

    def tokenization(self):
        """(vocab path or "", do_lower_case or None, tokenizer or None) the training data was
        made with: task.vocab_file and task.do_lower_case where set, else what
        create_pretraining_data wrote beside the shards."""
        data_directory = os.path.dirname(self.inputs("train").files[0])
        beside, beside_lower_case, tokenizer = vocab_files.data_tokenization(data_directory)
        vocab, do_lower_case = self.config.vocab_file or beside, self.config.do_lower_case
        if self.config.vocab_file and beside and (wordpiece.read_vocab(self.config.vocab_file)
                                                  != wordpiece.read_vocab(beside)):
            raise ValueError(f"task.vocab_file {self.config.vocab_file} is not the vocab {beside} "
                             "the training data was made with; leave task.vocab_file empty.")
        if do_lower_case is None:
            do_lower_case = beside_lower_case
        elif beside_lower_case not in (None, do_lower_case):
            raise ValueError(f"task.do_lower_case={do_lower_case} but the training data says it "
                             f"was made with do_lower_case={beside_lower_case}; leave it unset.")
        return vocab, do_lower_case, tokenizer

    def model_dir_records(self):
        """The vocab and casing of the data, which fine-tuning and export read from the
        model_dir: the data may move, and google-research/bert's shards carry neither."""
        vocab, do_lower_case, tokenizer = self.tokenization()
        records = {}
        if vocab:
            wordpiece.read_vocab(vocab)  # a vocab fine-tuning could not use fails here, now
            with tf.io.gfile.GFile(vocab) as f:
                records[vocab_files.VOCAB_FILE] = f.read()
        else:
            logging.warning("No vocab is known for this run's data (task.vocab_file is unset "
                            "and none lies beside the shards): fine-tuning from it or exporting "
                            "it will need one given.")
        if do_lower_case is not None:
            records[vocab_files.TOKENIZATION_FILE] = vocab_files.tokenization_record(
                do_lower_case, tokenizer)
        return records

    # ---------------------------------------------------------------------------- losses
    def loss_normalizers(self, features):
        return {
            "masked_lm": tf.reduce_sum(features["masked_lm_weights"]),
            "next_sentence": tf.cast(tf.shape(features["next_sentence_labels"])[0], tf.float32),
        }

    @staticmethod
    def _per_example_losses(features, outputs):
        mlm_logits = tf.cast(outputs["mlm_logits"], tf.float32)
        mlm = tf_keras.losses.sparse_categorical_crossentropy(
            features["masked_lm_ids"], mlm_logits, from_logits=True)
        nsp_logits = tf.cast(outputs["next_sentence"], tf.float32)
        nsp = tf_keras.losses.sparse_categorical_crossentropy(
            features["next_sentence_labels"][:, 0], nsp_logits, from_logits=True)
        return mlm, nsp

    def loss_sums(self, features, outputs):
        mlm, nsp = self._per_example_losses(features, outputs)
        return {"masked_lm": tf.reduce_sum(mlm * features["masked_lm_weights"]),
                "next_sentence": tf.reduce_sum(nsp)}

    # --------------------------------------------------------------------------- metrics
    def build_metrics(self):
        return [
            tf_keras.metrics.SparseCategoricalAccuracy(name="masked_lm_accuracy"),
            tf_keras.metrics.Mean(name="masked_lm_loss"),
            tf_keras.metrics.SparseCategoricalAccuracy(name="next_sentence_accuracy"),
            tf_keras.metrics.Mean(name="next_sentence_loss"),
            tf_keras.metrics.Mean(name="next_sentence_pooler_saturation"),
        ]

    def update_metrics(self, metrics, features, outputs):
        mlm_accuracy, mlm_loss, nsp_accuracy, nsp_loss, saturation = metrics
        mlm, nsp = self._per_example_losses(features, outputs)
        real = features["is_real_example"]
        mlm_weights = features["masked_lm_weights"] * real[:, None]
        mlm_accuracy.update_state(features["masked_lm_ids"],
                                  tf.cast(outputs["mlm_logits"], tf.float32),
                                  sample_weight=mlm_weights)
        mlm_loss.update_state(mlm, sample_weight=mlm_weights)
        nsp_accuracy.update_state(features["next_sentence_labels"][:, 0],
                                  tf.cast(outputs["next_sentence"], tf.float32),
                                  sample_weight=real)
        nsp_loss.update_state(nsp, sample_weight=real)
        pooled = tf.cast(outputs[POOLED_OUTPUT], tf.float32)
        saturation.update_state(
            tf.reduce_mean(tf.cast(tf.abs(pooled) > SATURATED, tf.float32), axis=-1),
            sample_weight=real)

    # ------------------------------------------------------------------------ the probe
    def model_eval_results(self, model):
        """The linear probe's dev accuracy on each of task.probe_tasks (none when empty)."""
        if not self.config.probe_tasks:
            return {}
        if self._probe is None:
            vocab, do_lower_case, _ = self.tokenization()
            if not vocab or do_lower_case is None:
                raise ValueError("task.probe_tasks needs the vocab and casing the training data "
                                 "was made with: set task.vocab_file and task.do_lower_case.")
            self._probe = probe_lib.LinearProbe(
                self.config.probe_tasks, wordpiece.read_vocab(vocab), do_lower_case,
                self.config.probe_max_seq_length)
        results, seconds = self._probe.timed_accuracies(model.encoder_network)
        logging.info("linear probe of the frozen encoder (%.1f s): %s", seconds,
                     "  ".join(f"{k} {v:.1%}" for k, v in results.items()))
        return results

    def health_warnings(self, results):
        saturation = results.get("next_sentence_pooler_saturation", 0.0)
        if saturation <= SATURATION_LIMIT:
            return []
        return [f"The next-sentence pooler is saturated: {saturation:.0%} of its tanh outputs "
                f"are beyond +-{SATURATED} on the eval data, so it gives nearly the same features "
                "for every input and passes almost no gradient (next-sentence accuracy "
                f"{results.get('next_sentence_accuracy', float('nan')):.1%}). Lower the learning "
                "rate; README, \"Pretraining that pays off\"."]
