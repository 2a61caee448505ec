"""Independent numpy references written from the equations (paper Algorithm 2; MLPerf LARS;
AdamW for the fine-tuning baseline).

Deliberately naive: float64 (or float32 where a test needs float32's overflow), one variable at
a time, no shared code with lamb_tf.
"""

import numpy as np


def lamb_reference(params, grads_per_step, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                   weight_decay=0.0, decay_mask=None, adapt_mask=None, bias_correction=True,
                   bounds=None, lr_per_step=None, dtype=np.float64):
    """Runs LAMB over a list of steps; returns (params, last trust ratios).

    `dtype=np.float32` runs the same equations in float32, where a gradient element above
    about 1.8e19 squares to Inf (numpy keeps float32 arrays float32 against Python scalars).
    """
    params = [np.array(p, dtype) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    decay_mask = decay_mask or [True] * len(params)
    adapt_mask = adapt_mask or [True] * len(params)
    ratios = [1.0] * len(params)
    for t, grads in enumerate(grads_per_step, start=1):
        if callable(grads):  # the gradient at the current parameters (a loss trained by fit)
            grads = grads(params)
        step_lr = lr_per_step[t - 1] if lr_per_step is not None else lr
        for i, g in enumerate(grads):
            g = np.asarray(g, dtype)
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * g * g
            if bias_correction:
                m_hat = m[i] / (1 - beta_1 ** t)
                v_hat = v[i] / (1 - beta_2 ** t)
            else:
                m_hat, v_hat = m[i], v[i]
            r = m_hat / (np.sqrt(v_hat) + epsilon)
            if decay_mask[i]:
                r = r + weight_decay * params[i]
            w_norm = np.sqrt(np.sum(params[i] ** 2))
            r_norm = np.sqrt(np.sum(r ** 2))
            ratio = 1.0
            if adapt_mask[i] and w_norm > 0 and r_norm > 0:
                phi = w_norm if bounds is None else min(max(w_norm, bounds[0]), bounds[1])
                ratio = phi / r_norm
            ratios[i] = ratio
            params[i] = params[i] - step_lr * ratio * r
    return params, ratios


def lars_reference(params, grads_per_step, lr, momentum=0.9, trust_coefficient=0.001,
                   weight_decay=0.0, epsilon=0.0, nesterov=False, decay_mask=None,
                   adapt_mask=None):
    params = [np.array(p, np.float64) for p in params]
    buf = [np.zeros_like(p) for p in params]
    decay_mask = decay_mask or [True] * len(params)
    adapt_mask = adapt_mask or [True] * len(params)
    ratios = [1.0] * len(params)
    for grads in grads_per_step:
        if callable(grads):
            grads = grads(params)
        for i, g in enumerate(grads):
            g = np.asarray(g, np.float64)
            wd = weight_decay if decay_mask[i] else 0.0
            w_norm = np.sqrt(np.sum(params[i] ** 2))
            g_norm = np.sqrt(np.sum(g ** 2))
            trust = 1.0
            if adapt_mask[i] and w_norm > 0 and g_norm > 0:
                trust = trust_coefficient * w_norm / (g_norm + wd * w_norm + epsilon)
            ratios[i] = trust
            scaled = lr * trust * (g + wd * params[i])
            buf[i] = momentum * buf[i] + scaled
            update = momentum * buf[i] + scaled if nesterov else buf[i]
            params[i] = params[i] - update
    return params, ratios


def adamw_reference(start, grads_per_step, factors, decayed, lr=0.05, weight_decay=0.1,
                    beta_1=0.8, beta_2=0.95, epsilon=1e-3):
    """Adam (Kingma & Ba, Algorithm 1, epsilon after the bias correction of the rate) with
    decoupled decay (Loshchilov & Hutter), variable i at rate lr * factors[i]."""
    weights = [np.array(w, np.float64) for w in start]
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, g in enumerate(grads):
            rate = lr * factors[i]
            if decayed[i]:
                weights[i] -= weights[i] * weight_decay * rate
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * g * g
            step_rate = rate * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
            weights[i] -= step_rate * m[i] / (np.sqrt(v[i]) + epsilon)
    return weights


def schedule_reference(step, peak, total, warmup, end=0.0, power=1.0, start=0):
    s = max(step - start, 0)
    if warmup > 0 and s < warmup:
        return peak * s / warmup
    progress = min(max((s - warmup) / (total - start - warmup), 0.0), 1.0)
    return (peak - end) * (1 - progress) ** power + end
