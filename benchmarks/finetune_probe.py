r"""What a frozen encoder's features know about a built-in task (default BBC News topics): a
linear probe.

    python -m benchmarks.finetune_probe --init_checkpoint=runs/tiny_wiki_lamb [--task=reuters_r8]

For the pretrained encoder and the same architecture at random weights, fits a logistic
regression (trainers/bert/probe.py, which pretraining runs at each evaluation with
task.probe_tasks) on the training texts' features and prints its dev accuracy, for two
features: the mean of the final layer over the real tokens, and the [CLS] token's final layer.
No fine-tuning: this separates what pretraining put into the features from how fast fine-tuning
can change them.
"""

import tensorflow as tf
from absl import app, flags

from trainers import config as config_lib
from trainers import recipes
from trainers.bert import probe
from trainers.bert.finetune import builtin_tasks
from trainers.bert.finetune import data as data_lib
from trainers.bert.finetune.config import ClassificationExperimentConfig
from trainers.bert.finetune.task import ClassificationTask, resolve_pretrained

flags.DEFINE_string("init_checkpoint", None, "A pretraining model_dir, checkpoint or export.")
flags.DEFINE_enum("task", "bbc_news", list(builtin_tasks.TASKS), "The built-in task whose "
                  "config (configs/bert/finetune_<task>.yaml) gives the data and lengths.")
flags.DEFINE_integer("seed", 1, "Seed of the random encoder's weights.")
flags.mark_flag_as_required("init_checkpoint")
FLAGS = flags.FLAGS


def features(task, encoder, mode):
    """([mean-pooled, [CLS]] features, labels) of a split."""
    arrays = task.inputs(mode).arrays
    return probe.pooled_features(encoder, arrays), arrays[data_lib.LABEL_KEY]


def main(argv):
    del argv
    experiment = ClassificationExperimentConfig()
    config_lib.merge(experiment, config_lib.load_yaml(
        recipes.resolve(f"finetune_{FLAGS.task}", "bert")))
    experiment.trainer.init_checkpoint = FLAGS.init_checkpoint
    resolve_pretrained(experiment)
    task = ClassificationTask(experiment.task)
    for pretrained in (True, False):
        tf.random.set_seed(FLAGS.seed)
        model = task.build_model()
        if pretrained:
            task.initialize(model, FLAGS.init_checkpoint)
        encoder = model.checkpoint_items["encoder"]
        (train_pooled, train_cls), train_labels = features(task, encoder, "train")
        (dev_pooled, dev_cls), dev_labels = features(task, encoder, "eval")
        for name, train, dev in (("mean over tokens", train_pooled, dev_pooled),
                                 ("[CLS]", train_cls, dev_cls)):
            accuracy = probe.dev_accuracy(train, train_labels, dev, dev_labels)
            print(f"{'pretrained' if pretrained else 'random':>10} encoder, {name:>16}: "
                  f"dev accuracy {accuracy:.1%}", flush=True)


if __name__ == "__main__":
    app.run(main)
