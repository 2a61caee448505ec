"""Linear least squares, where every per-example gradient is known in closed form: the exact
|G|^2 and tr(Sigma) of a finite data set, and the sampling error of the two-batch estimates,
all in numpy, independent of lamb_tf.noise_scale."""

import numpy as np


def problem(num_examples=4096, dim=8, seed=0):
    """(x, y, w): inputs, targets, and the fixed weights the gradients are taken at."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, dim)).astype(np.float32)
    w_true = rng.normal(size=(dim, 1)).astype(np.float32)
    y = (x @ w_true + 0.5 * rng.normal(size=(num_examples, 1))).astype(np.float32)
    w = (w_true + 0.3 * rng.normal(size=(dim, 1))).astype(np.float32)
    return x, y, w


def per_example_gradients(x, y, w, residual_scale=2.0):
    """d/dw of residual_scale/2 * (x.w - y)^2 for each example: [N, dim] (float64)."""
    x, y, w = (a.astype(np.float64) for a in (x, y, w))
    return residual_scale * (x @ w - y) * x


def exact_expectations(gradients, small_batch, big_batch):
    """E[|G|^2 estimate] and E[tr(Sigma) estimate] for batches drawn without replacement from
    the N examples (each epoch a permutation): the finite-population versions of |G|^2 and
    tr(Sigma)."""
    n = len(gradients)
    mean = gradients.mean(0)
    spread = ((gradients - mean) ** 2).sum(1).mean()  # population tr(Sigma), 1/N
    del small_batch, big_batch  # the expectations below hold for any pair of sizes
    return float(mean @ mean - spread / (n - 1)), float(spread * n / (n - 1))


def estimate_spread(gradients, small_batch, big_batch, draws=2000, seed=1):
    """Standard deviation of one batch's two estimates, by simulation of the estimator."""
    rng = np.random.default_rng(seed)
    parts = big_batch // small_batch
    g2, trace = [], []
    for _ in range(draws):
        batch = gradients[rng.choice(len(gradients), big_batch, replace=False)]
        big = (batch.mean(0) ** 2).sum()
        small = np.mean([(part.mean(0) ** 2).sum() for part in np.split(batch, parts)])
        g2.append((big_batch * big - small_batch * small) / (big_batch - small_batch))
        trace.append((small - big) / (1 / small_batch - 1 / big_batch))
    return float(np.std(g2)), float(np.std(trace))
