"""Cost of lamb_tf.callbacks.TrustRatioLogger in model.fit, as a ratio to fit without it.

    python -m benchmarks.callback_overhead [--every_n_steps=100] [--rounds=5]

A small CNN (the large-batch study's fashion_cnn) on random 28x28 images, batch 64, one update
per call (steps_per_execution=1, the setting where a per-batch callback costs most). Fits with
and without the logger alternate, so drift of this machine's speed cancels; the figure is the
median ratio of their times.
"""

import argparse
import statistics
import tempfile
import time

import keras
import numpy as np

import lamb_tf
from benchmarks.large_batch_study.workloads import FashionCnn
from benchmarks import result_file


def timed_fit(model, data, callbacks, steps):
    x, y = data
    start = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False,
              callbacks=callbacks)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every_n_steps", type=int, default=100)
    parser.add_argument("--steps", type=int, default=2000, help="updates per timed fit")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = (rng.random((64 * args.steps, 28, 28, 1), dtype=np.float32),
            rng.integers(0, 10, 64 * args.steps).astype(np.int32))
    keras.utils.set_random_seed(0)
    model = FashionCnn.build_model((28, 28, 1))
    model.compile(optimizer=lamb_tf.Lamb(1e-3), jit_compile=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    log_dir = tempfile.mkdtemp(prefix="trust_ratio_logger_")
    logger = lamb_tf.callbacks.TrustRatioLogger(log_dir, every_n_steps=args.every_n_steps)
    timed_fit(model, data, [], 50)  # compile
    timed_fit(model, data, [logger], 50)
    plain, logged = [], []
    for _ in range(args.rounds):
        plain.append(timed_fit(model, data, [], args.steps))
        logged.append(timed_fit(model, data, [logger], args.steps))
    ratios = [b / a for a, b in zip(plain, logged)]
    # The direct cost: one log event (all summaries, one compiled call), timed alone.
    writes = []
    for step in range(30):
        start = time.perf_counter()
        logger._write(np.int64(10**6 + step))
        writes.append(time.perf_counter() - start)
    step_seconds = statistics.median(plain) / args.steps
    event = statistics.median(writes)
    print(f"fit without logger: median {statistics.median(plain):.2f} s for {args.steps} updates")
    print(f"fit with TrustRatioLogger(every_n_steps={args.every_n_steps}): median "
          f"{statistics.median(logged):.2f} s")
    print(f"one log event: {1000 * event:.2f} ms = {event / step_seconds:.2f} updates of "
          f"{1000 * step_seconds:.2f} ms: {100 * event / (step_seconds * args.every_n_steps):.2f}%"
          f" of training at every_n_steps={args.every_n_steps}")
    print(f"TrustRatioLogger / no logger: {statistics.median(ratios):.3f}x "
          f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    result_file.run(main)
