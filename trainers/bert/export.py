r"""The pretrained encoder of a trainers.bert model_dir, the way fine-tuning tools load it.

    python -m trainers.bert.export --model_dir=runs/tiny_wiki_lamb --output_dir=/tmp/tiny_bert

Writes into --output_dir:
- `bert_model.ckpt.*`: a Model Garden pretrainer checkpoint (`encoder`, `masked_lm`,
  `next_sentence.pooler_dense`): what Model Garden's BERT fine-tuning tasks read as
  `init_checkpoint` (they restore `encoder`, and with `init_cls_pooler` the pooler).
- `encoder_config.yaml`: Model Garden's `EncoderConfig` (type `bert_v2`), for a fine-tuning
  config's `model.encoder` or `official.nlp.configs.encoders.build_encoder`.
- `vocab.txt`: the WordPiece vocab the pretraining data was made with, and
  `tokenization.json` (`do_lower_case`) when the run records how it was cased (the model_dir's
  own copies; for runs from before they were recorded, the files beside the training data).
- `saved_model/`: a SavedModel of the encoder: inputs `input_word_ids`, `input_mask`,
  `input_type_ids` (int32 [batch, seq]); outputs `sequence_output`, `pooled_output`.

The encoder's own pooler gets no gradient in pretraining (the next-sentence head has its own), so
the exported encoder carries the trained next-sentence pooler in its place: `pooled_output` is
the pooled [CLS] that pretraining actually learned.
"""

import logging as python_logging
import os

import tensorflow as tf
import yaml
from absl import flags

from trainers import cli
from trainers import checkpointing
from trainers.bert import pretrained
from trainers.bert import vocab_files

CHECKPOINT_NAME = pretrained.CHECKPOINT_NAME
ENCODER_CONFIG_FILE = pretrained.ENCODER_CONFIG_FILE
SAVED_MODEL_DIR = "saved_model"
INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")


class EncoderModule(tf.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name=name)
                                  for name in INPUT_NAMES])
    def serve(self, input_word_ids, input_mask, input_type_ids):
        outputs = self.encoder({"input_word_ids": input_word_ids, "input_mask": input_mask,
                                "input_type_ids": input_type_ids}, training=False)
        return {"sequence_output": outputs["sequence_output"],
                "pooled_output": outputs["pooled_output"]}


def _normalized(path):
    # Real paths: through a symlink (runs -> disk/runs) an absolute path hides that the output
    # holds the model_dir, and --overwrite would delete the run.
    return path.rstrip("/") if "://" in path else os.path.realpath(path)


def _check_output_dir(model_dir, output_dir):
    """Refuses an output_dir that is, or holds, the model_dir: replacing it would delete the
    run it is exported from."""
    model, output = _normalized(model_dir), _normalized(output_dir)
    if model == output or model.startswith(output.rstrip("/") + "/"):
        relation = "is" if model == output else "contains"
        raise ValueError(f"--output_dir {output_dir} {relation} the --model_dir {model_dir}; "
                         "replacing it would delete the training run. Choose an --output_dir "
                         "outside the model_dir.")


def export(model_dir, output_dir, vocab_file="", overwrite=False):
    """Writes the export (see the module docstring); returns the checkpoint it was made from.

    The export is built in a sibling folder and swapped in only when whole, so a failed export
    leaves a previous one as it was.
    """
    _check_output_dir(model_dir, output_dir)
    experiment = pretrained.pretraining_experiment(model_dir)
    latest = checkpointing.newest_whole_checkpoint(model_dir, 0, move_broken=False)
    if latest is None:
        raise FileNotFoundError(f"No checkpoint in {model_dir} to export; train first.")
    recorded_vocab, do_lower_case = pretrained.pretraining_tokenization(model_dir, experiment)
    vocab = vocab_file or recorded_vocab
    if not vocab:
        raise FileNotFoundError(f"{model_dir} records no vocab, and none lies beside its "
                                "training data; pass --vocab_file with the vocab the data was "
                                "made with.")
    replacing = tf.io.gfile.exists(output_dir) and bool(tf.io.gfile.listdir(output_dir))
    if replacing and not overwrite:
        raise ValueError(f"{output_dir} is not empty; pass --overwrite to replace its "
                         "contents, or choose another --output_dir.")
    parent, name = os.path.split(output_dir.rstrip("/"))
    partial = os.path.join(parent, f".{name}.partial-{os.getpid()}")
    if tf.io.gfile.exists(partial):
        tf.io.gfile.rmtree(partial)
    tf.io.gfile.makedirs(partial)
    try:
        _write_export(experiment, latest, vocab, do_lower_case, partial)
    except BaseException:
        tf.io.gfile.rmtree(partial)
        raise
    if tf.io.gfile.exists(output_dir):
        previous = os.path.join(parent, f".{name}.previous-{os.getpid()}")
        tf.io.gfile.rename(output_dir, previous, overwrite=True)
        tf.io.gfile.rename(partial, output_dir)
        tf.io.gfile.rmtree(previous)
    else:
        tf.io.gfile.rename(partial, output_dir)
    return latest


def _write_export(experiment, checkpoint, vocab, do_lower_case, output_dir):
    model = pretrained.trained_pretrainer(experiment, checkpoint)
    tf.train.Checkpoint(**model.checkpoint_items).write(os.path.join(output_dir,
                                                                     CHECKPOINT_NAME))
    with tf.io.gfile.GFile(os.path.join(output_dir, ENCODER_CONFIG_FILE), "w") as f:
        f.write(yaml.safe_dump(pretrained.encoder_config(experiment.task.model),
                               sort_keys=False))
    tf.io.gfile.copy(vocab, os.path.join(output_dir, vocab_files.VOCAB_FILE), overwrite=True)
    if do_lower_case is not None:
        with tf.io.gfile.GFile(os.path.join(output_dir, vocab_files.TOKENIZATION_FILE), "w") as f:
            f.write(vocab_files.tokenization_record(do_lower_case))
    module = EncoderModule(model.encoder_network)
    # tf.saved_model.save leaves absl's logger at WARNING, which would silence the INFO
    # progress of everything the calling process runs after an in-process export.
    absl_logger = python_logging.getLogger("absl")
    level = absl_logger.level
    try:
        tf.saved_model.save(module, os.path.join(output_dir, SAVED_MODEL_DIR),
                            signatures={"serving_default": module.serve})
    finally:
        absl_logger.setLevel(level)


def main(argv):
    cli.no_arguments(argv)
    options = flags.FLAGS
    try:
        source = export(options.model_dir, options.output_dir, options.vocab_file,
                        options.overwrite)
    except (ValueError, FileNotFoundError) as e:
        cli.user_error(e)
    print(f"exported {source} -> {options.output_dir} ({CHECKPOINT_NAME}, "
          f"{ENCODER_CONFIG_FILE}, vocab.txt, {SAVED_MODEL_DIR}/)")


if __name__ == "__main__":
    flags.DEFINE_string("model_dir", None, "A trainers.bert model_dir (params.yaml + checkpoints).")
    flags.DEFINE_string("output_dir", None, "Where the export goes.")
    flags.DEFINE_string("vocab_file", "", "The vocab of the pretraining data (default: the "
                        "model_dir's recorded vocab.txt).")
    flags.DEFINE_bool("overwrite", False, "Replace a non-empty --output_dir.")
    flags.mark_flags_as_required(["model_dir", "output_dir"])
    cli.run(main)
