"""One run of every speed and correctness check that matters on an accelerator, one table.

    benchmarks/accelerator_check.sh          # on a machine with a GPU: full sizes
    benchmarks/accelerator_check.sh --cpu    # small sizes on CPU, minutes (CI runs this)

GPU mode: the optimizer step at BERT-base and BERT-large shapes with the card's own memory floor
(`benchmarks.optimizer_step`), trainer throughput of BERT-base (sequence 128, bf16, our runner
with and without --jit_compile, against Model Garden's loop) and of ResNet-50 (224x224
synthetic images, bf16) (`benchmarks.trainer_throughput`), the training input read per input
worker against one pipeline (`benchmarks.input_placement`; on a TPU VM run that module with
--distribution_strategy=tpu --tpu=local), and mirrored over all GPUs against one device
(`benchmarks.mirrored_check`). CPU mode runs the same code paths at toy sizes, so the
script a GPU user runs is known to work; its figures mean nothing.
"""

import argparse
import os
import subprocess
import sys

from benchmarks import mirrored_check, optimizer_step, trainer_throughput

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GPU_PLAN = {
    "optimizer_sizes": ["base", "large"], "optimizer_rounds": 15,
    "bert": ["--bert_size=base", "--train_batch_size=64", "--steps_per_loop=20", "--loops=4",
             "--rounds=3", "--dtype=bfloat16"],
    "resnet": ["--workload=resnet", "--resnet_depth=50", "--image_size=224",
               "--train_batch_size=128", "--steps_per_loop=20", "--loops=4", "--rounds=3",
               "--dtype=bfloat16"],
    "mirrored": [],
    "input": ["--distribution_strategy=mirrored", "--train_batch_size=256", "--steps=100"],
}
CPU_PLAN = {
    "optimizer_sizes": ["tiny"], "optimizer_rounds": 3,
    "bert": ["--bert_size=tiny", "--train_batch_size=8", "--steps_per_loop=2", "--loops=2",
             "--rounds=1", "--dtype=bfloat16"],
    "resnet": ["--workload=resnet", "--resnet_depth=18", "--image_size=32",
               "--train_batch_size=8", "--steps_per_loop=2", "--loops=2", "--rounds=1",
               "--dtype=bfloat16"],
    "mirrored": ["--steps=2", "--train_batch_size=8"],
    "input": ["--distribution_strategy=mirrored", "--num_cpu_devices=2",
              "--train_batch_size=16", "--steps=5", "--rounds=1"],
}


def input_rates(args):
    """{way: examples/s} of benchmarks.input_placement, run in its own process (it sets up
    logical devices, which must happen before anything else touches TensorFlow)."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.input_placement", *args],
                          cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    print(done.stdout, end="", flush=True)
    if done.returncode:
        raise RuntimeError(f"input_placement failed:\n{done.stderr[-3000:]}")
    return {line.split(":")[0].strip(): float(line.split(":")[1].split()[0])
            for line in done.stdout.splitlines() if "examples/s" in line}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true",
                        help="toy sizes on CPU: proves the script works, measures nothing")
    args = parser.parse_args(argv)
    if not args.cpu and not mirrored_check.gpus_present():
        print("accelerator_check: TensorFlow sees no GPU here. Run it on a GPU machine, or "
              "pass --cpu for the small CPU run that only proves the script works.",
              file=sys.stderr)
        return 2
    plan = CPU_PLAN if args.cpu else GPU_PLAN
    table = []  # (check, setting, figure)

    for size in plan["optimizer_sizes"]:
        print(f"\n== optimizer step, BERT-{size} shapes", flush=True)
        rows = optimizer_step.main([f"--size={size}", f"--rounds={plan['optimizer_rounds']}"])
        for name, milliseconds, of_adamw, _, of_floor in rows:
            table.append((f"optimizer step BERT-{size}", name,
                          f"{milliseconds:.1f} ms, {of_adamw:.2f}x AdamW, {of_floor:.2f}x floor"))
    for workload in ("bert", "resnet"):
        print(f"\n== trainer throughput, {workload}", flush=True)
        medians = trainer_throughput.main(plan[workload])
        anchor = medians["orbit_mg"]
        for label, kind in trainer_throughput.CONTENDERS[workload]:
            table.append((f"trainer throughput {workload}", label,
                          f"{medians[kind]:.1f} examples/s, {medians[kind] / anchor:.2f}x "
                          "MG loop"))
    print("\n== training input: per input worker vs one pipeline", flush=True)
    for label, rate in input_rates(plan["input"]).items():
        table.append(("training input, all GPUs", label, f"{rate:.0f} examples/s"))
    print("\n== mirrored vs one device", flush=True)
    same = mirrored_check.main(plan["mirrored"])
    table.append(("mirrored == one device", "BERT, 4 steps" if not args.cpu else
                  "BERT-tiny, 2 steps", "OK" if same else "DIFFERENT"))

    print("\n" + "=" * 100)
    width = max(len(check) for check, _, _ in table)
    label_width = max(len(label) for _, label, _ in table)
    for check, label, figure in table:
        print(f"{check:{width}s}  {label:{label_width}s}  {figure}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
