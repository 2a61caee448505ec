r"""Training input per input worker against one pipeline on the coordinator, in examples/s.

    python -m benchmarks.input_placement --distribution_strategy=tpu --tpu=local   # pod slice
    python -m benchmarks.input_placement --distribution_strategy=mirrored          # all GPUs
    python -m benchmarks.input_placement --distribution_strategy=mirrored --num_cpu_devices=2

Reads the BERT pretraining batches of the built-in data (the trainers' input_fn, data
positions included) into every replica, two ways, alternating rounds in one process:
- "per input worker": what the trainers do, `distribute_datasets_from_function`, one pipeline
  per input worker (each host of a TPU pod slice) prefetched to the replicas' devices;
- "one pipeline": the trainers' input before, one pipeline on the coordinator whose batches
  are handed to the replicas (`experimental_distribute_values_from_function`).
Each replica only sums its batch, so the figure is the input path alone. On a pod slice the
first should scale with the hosts; on one machine they may tie. On CPU it proves the script.
"""

import argparse
import statistics
import sys
import time

import tensorflow as tf

from trainers import config as config_lib
from trainers import distribution
from trainers.bert import builtin_data
from trainers.bert.input_pipeline import PretrainingInput
from benchmarks import result_file


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distribution_strategy", default="mirrored",
                        choices=["one_device", "mirrored", "tpu"])
    parser.add_argument("--tpu", default="", help="TPU name or `local`")
    parser.add_argument("--num_cpu_devices", type=int, default=2,
                        help="logical CPUs for mirrored without GPUs")
    parser.add_argument("--train_batch_size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each way, alternating")
    return parser.parse_args(argv)


def _consumer(strategy):
    @tf.function
    def consume(iterator, batches):
        total = tf.constant(0, tf.int64)
        for _ in tf.range(batches):
            sums = strategy.run(lambda batch: tf.reduce_sum(
                tf.cast(batch["input_word_ids"], tf.int64)), args=(next(iterator),))
            total += strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)
        return total
    return consume


def per_input_worker(strategy, data, batch):
    return iter(strategy.distribute_datasets_from_function(
        lambda context: data.train_dataset(batch, context, seed=1)))


def one_pipeline(strategy, data, batch):
    local = len(strategy.extended.worker_devices)
    context = tf.distribute.InputContext(1, 0, strategy.num_replicas_in_sync)
    iterator = iter(data.train_dataset(batch, context, seed=1))

    class HandedOver:
        """Each step, one batch per replica read on the coordinator and handed over."""
        def __next__(self):
            batches = [next(iterator) for _ in range(local)]
            return strategy.experimental_distribute_values_from_function(
                lambda ctx: batches[ctx.replica_id_in_sync_group % local])

    return HandedOver()


def main(argv=None):
    args = parse(argv)
    runtime = config_lib.RuntimeConfig(distribution_strategy=args.distribution_strategy,
                                       tpu=args.tpu, num_cpu_devices=args.num_cpu_devices)
    strategy = distribution.make_strategy(runtime)
    data = PretrainingInput(f"{builtin_data.ensure(128, 20)}/train-*", 128, 20)
    consume = _consumer(strategy)
    ways = {"per input worker": per_input_worker, "one pipeline": one_pipeline}
    rates = {name: [] for name in ways}
    for round_index in range(args.rounds + 1):  # the first round traces and warms up
        for name, make in ways.items():
            iterator = make(strategy, data, args.train_batch_size)
            consume(iterator, tf.constant(1))
            start = time.perf_counter()
            consume(iterator, tf.constant(args.steps)).numpy()
            if round_index:
                rates[name].append(args.steps * args.train_batch_size /
                                   (time.perf_counter() - start))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in medians.items():
        print(f"{name:>17}: {value:10.0f} examples/s  "
              f"({value / medians['one pipeline']:.2f}x one pipeline)", flush=True)
    return medians


if __name__ == "__main__":
    result_file.run(lambda: main(sys.argv[1:]))
