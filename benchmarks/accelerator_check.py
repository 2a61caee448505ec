"""One run of every speed and correctness check that matters on an accelerator, one table.

    benchmarks/accelerator_check.sh          # on a machine with a GPU: full sizes
    benchmarks/accelerator_check.sh --cpu    # small sizes on CPU, minutes (CI runs this)

GPU mode: the optimizer step at BERT-base and BERT-large shapes with the card's own memory floor
(`benchmarks.optimizer_step`), trainer throughput of BERT-base (sequence 128, bf16, our runner
with and without --jit_compile, against Model Garden's loop) and of ResNet-50 (224x224
synthetic images, bf16) (`benchmarks.trainer_throughput`), and mirrored over all GPUs against
one device (`benchmarks.mirrored_check`). CPU mode runs the same code paths at toy sizes, so the
script a GPU user runs is known to work; its figures mean nothing.
"""

import argparse
import sys

from benchmarks import mirrored_check, optimizer_step, trainer_throughput

GPU_PLAN = {
    "optimizer_sizes": ["base", "large"], "optimizer_rounds": 15,
    "bert": ["--bert_size=base", "--train_batch_size=64", "--steps_per_loop=20", "--loops=4",
             "--rounds=3", "--dtype=bfloat16"],
    "resnet": ["--workload=resnet", "--resnet_depth=50", "--image_size=224",
               "--train_batch_size=128", "--steps_per_loop=20", "--loops=4", "--rounds=3",
               "--dtype=bfloat16"],
    "mirrored": [],
}
CPU_PLAN = {
    "optimizer_sizes": ["tiny"], "optimizer_rounds": 3,
    "bert": ["--bert_size=tiny", "--train_batch_size=8", "--steps_per_loop=2", "--loops=2",
             "--rounds=1", "--dtype=bfloat16"],
    "resnet": ["--workload=resnet", "--resnet_depth=18", "--image_size=32",
               "--train_batch_size=8", "--steps_per_loop=2", "--loops=2", "--rounds=1",
               "--dtype=bfloat16"],
    "mirrored": ["--steps=2", "--train_batch_size=8"],
}


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
