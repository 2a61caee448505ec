r"""Fine-tune a pretrained BERT for text classification:

    python -m trainers.bert.finetune --config_file=finetune_bbc_news \
        --init_checkpoint=runs/tiny_wiki_lamb --mode=train_and_eval

--init_checkpoint takes a trainers.bert model_dir, one of its checkpoints, or an export folder
(python -m trainers.bert.export); the encoder's size, vocab and casing come from it. The same
runner and flags as trainers.bert (see its --help). Test accuracy after training:
--mode=eval --params_override=task.eval_data.input_path=bbc_news:test
The built-in tasks (trainers/bert/finetune/builtin_tasks.py) each have a config of this
protocol: finetune_bbc_news, finetune_reuters_r8, finetune_health_tweets,
finetune_tweet_sentiment.
"""

from absl import flags

from trainers import cli
from trainers import flags as trainer_flags
from trainers.bert.finetune.config import ClassificationExperimentConfig
from trainers.bert.finetune.task import ClassificationTask, resolve_pretrained
from trainers.main import run_from_flags

trainer_flags.define_flags()
flags.adopt_module_key_flags(trainer_flags)  # so that --help lists them


def main(argv):
    cli.no_arguments(argv)
    run_from_flags(ClassificationExperimentConfig(), ClassificationTask,
                   lambda experiment: resolve_pretrained(experiment, trainer_flags.model_dir()))


if __name__ == "__main__":
    cli.run(main)
