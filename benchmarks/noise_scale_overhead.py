"""What measuring the gradient noise scale costs a training step.

    python -m benchmarks.noise_scale_overhead
    python -m benchmarks.noise_scale_overhead --bert_size=mini --train_batch_size=32

BERT pretraining on the built-in data through the trainers' runner (its compiled loop, as
`python -m trainers.bert` runs it), one device, in two layouts, each with `trainer.noise_scale`
measuring and `disabled`:

- `accumulation`: `num_accumulation_steps=2`, whose micro-batch gradients exist anyway;
  measuring adds a squared norm per micro-batch and a scalar all-reduce (`auto`);
- `split`: no accumulation; `noise_scale=split` cuts each batch in two micro-batches (two passes
  of half the batch) to have gradients at two batch sizes.

Both runners of a layout live in one process and their loops alternate (ABBA order) for
`--rounds` rounds after a loop each to trace and compile, so drift hits both alike; separate
processes differ by +-7% here, more than the effect. The last lines read
`<layout>: measuring / disabled step time 1.013x`.
"""

import argparse
import os
import statistics
import tempfile
import time

from trainers import config as config_lib
from trainers.bert import builtin_data
from trainers.bert.config import BertExperimentConfig
from trainers.bert.task import BertPretrainingTask
from trainers import recipes
from trainers import runner
from benchmarks import result_file

LAYOUTS = {"accumulation": (2, "auto"), "split": (1, "split")}


def make_runner(args, accumulation, noise_scale, model_dir):
    experiment = config_lib.merge(BertExperimentConfig(),
                                  config_lib.load_yaml(recipes.resolve("bert/tiny_wiki_lamb")))
    config_lib.merge(experiment, {
        "task": {"model": {"size": args.bert_size}},
        "trainer": {"train_batch_size": args.train_batch_size, "noise_scale": noise_scale,
                    "num_accumulation_steps": accumulation}})
    built = runner.Runner(BertPretrainingTask(experiment.task), experiment, model_dir)
    iterator = iter(built.train_input.dataset())
    loop = built._make_train_loop()
    return lambda steps: loop(iterator, steps)


def seconds(run, steps):
    start = time.perf_counter()
    run(steps)  # returns Python numbers: the loop has finished
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bert_size", default="tiny")
    parser.add_argument("--train_batch_size", type=int, default=64)
    parser.add_argument("--steps_per_loop", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    builtin_data.ensure(128, 20)
    print(f"BERT-{args.bert_size}, batch {args.train_batch_size}, sequence 128, one device, "
          f"loops of {args.steps_per_loop} updates, {args.rounds} rounds (ABBA)", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as root:
        for layout, (accumulation, setting) in LAYOUTS.items():
            contenders = {mode: make_runner(args, accumulation, value,
                                            os.path.join(root, f"{layout}_{mode}"))
                          for mode, value in (("measuring", setting), ("disabled", "disabled"))}
            for run in contenders.values():
                run(args.steps_per_loop)  # trace and compile
            times = {mode: [] for mode in contenders}
            for round_index in range(args.rounds):
                order = list(contenders) if round_index % 2 == 0 else list(contenders)[::-1]
                for mode in order:
                    times[mode].append(seconds(contenders[mode], args.steps_per_loop))
            measuring = statistics.median(times["measuring"]) / args.steps_per_loop
            disabled = statistics.median(times["disabled"]) / args.steps_per_loop
            results[layout] = measuring / disabled
            print(f"{layout}: {1000 * measuring:.1f} ms/update measuring, "
                  f"{1000 * disabled:.1f} disabled", flush=True)
    for layout, ratio in results.items():
        print(f"{layout}: measuring / disabled step time {ratio:.3f}x")


if __name__ == "__main__":
    result_file.run(main)
