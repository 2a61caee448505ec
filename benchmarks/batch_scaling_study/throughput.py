"""Examples/s of the batch-scaling study's pretraining at each of its batches, measured in one
sitting on one machine, so that what accumulating micro-batches costs can be read off.

    python -m benchmarks.batch_scaling_study.throughput \
        --output=benchmarks/results/performance/batch_scaling_throughput.txt

The study's own runs record their examples/s too, but they ran over days, on whichever machine a
session had, at whatever speed it had then: not comparable across batches. Here each batch runs
the study's pretraining (README command 1's recipe with the study's flags: its micro-batch and
accumulation, LAMB at the square-root rule's rate) for `--loops` loops of about
`--examples_per_loop` examples in a fresh process; the batches alternate round by round so that
the machine's drift is shared, and each figure is the trainer's own `throughput:` line (the first
loop, which traces and compiles, left out), the median over rounds. The last column divides by
the batch of one micro-batch at full size (128 x 1), measured in the same rounds. Batches that
accumulate also measure the gradient noise scale, as the study's runs did (the trainer's
default, `trainer.noise_scale: auto`), so its cost is part of theirs.
"""

import argparse
import statistics
import sys
import tempfile

from benchmarks import result_file
from benchmarks import trainer_process
from benchmarks import trainer_throughput
from benchmarks.batch_scaling_study import protocol
from benchmarks.batch_scaling_study import runs
from benchmarks.pretraining_study import RECIPE


def measured_flags(plan, batch, loops, examples_per_loop):
    """The study's pretraining flags at `batch`, cut to `loops` loops of whole updates. The
    warmup spans the run, so the rate stays low: what a loop costs does not depend on it, and a
    short run at a large batch's peak rate could diverge."""
    setting = plan.untuned("lamb", batch)
    updates = max(1, examples_per_loop // batch)
    steps = updates * loops
    # absl keeps a flag's last value: these replace the study's run length, loop and warmup.
    return runs.pretraining_flags(setting, plan) + [
        f"--num_train_steps={steps}", f"--iterations_per_loop={updates}",
        f"--save_checkpoints_steps={steps}", f"--num_warmup_steps={steps - 1}"]


def measure_once(plan, batch, loops, examples_per_loop):
    with tempfile.TemporaryDirectory(prefix="batch_throughput_") as model_dir:
        printed = trainer_process.run(
            "trainers.bert", [f"--config_file={RECIPE}", "--mode=train",
                              f"--model_dir={model_dir}",
                              *measured_flags(plan, batch, loops, examples_per_loop)],
            f"batch {batch}'s pretraining")
    return trainer_throughput.parse_rate("runner", printed)


def row_name(plan, batch):
    return f"batch {batch}: {min(batch, plan.micro_batch)} x {plan.accumulation_steps(batch)}"


def table(plan, rates, anchor_batch):
    """The printed table: a row per batch, its median examples/s and its ratio to the anchor's."""
    medians = {batch: statistics.median(values) for batch, values in rates.items()}
    first = "batch: micro-batch x accumulation"
    width = max([len(first)] + [len(row_name(plan, batch)) for batch in rates])
    anchor = f"x batch {anchor_batch}"
    lines = [f"{first:<{width}}  examples/s  {anchor}"]
    for batch, rate in medians.items():
        ratio = rate / medians[anchor_batch]
        lines.append(f"{row_name(plan, batch):<{width}}  {rate:>10.1f}  "
                     f"{ratio:>{len(anchor)}.2f}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default=",".join(str(b) for b in protocol.Plan().batches))
    parser.add_argument("--loops", type=int, default=3, help="the first one is not timed")
    parser.add_argument("--examples_per_loop", type=int, default=3200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        plan = protocol.Plan(batches=tuple(int(b) for b in args.batches.split(",")))
        plan.check()
    except ValueError as e:
        sys.exit(f"error: --batches: {e}")
    if args.loops < 2:
        sys.exit("error: --loops must be at least 2: the first loop traces and is not timed.")
    anchor_batch = plan.micro_batch
    if anchor_batch not in plan.batches:
        sys.exit(f"error: --batches must include {anchor_batch}, one full micro-batch: the batch "
                 "the others are divided by.")
    print(f"BERT-Tiny pretraining as the batch-scaling study runs it ({RECIPE}, LAMB at the "
          f"square-root rule's rate), micro-batch {plan.micro_batch}; {args.loops} loops of "
          f"about {args.examples_per_loop} examples, the first not timed; {args.rounds} "
          "alternating rounds, median shown")
    rates = {batch: [] for batch in plan.batches}
    for round_index in range(args.rounds):
        for batch in plan.batches:
            rate = measure_once(plan, batch, args.loops, args.examples_per_loop)
            rates[batch].append(rate)
            print(f"  round {round_index + 1}: batch {batch}: {rate:.1f} examples/s", flush=True)
    print("\n".join(table(plan, rates, anchor_batch)))


if __name__ == "__main__":
    result_file.run(main)
