"""Lamb and Lars (both Keras generations) against numpy written from the equations."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.generations import GENERATIONS, Keras3
from tests.optimizer_cases import (LAMB_CASES, LARS_CASES, SHAPES, STEPS, gradient_steps,
                                    initial_values, masks, reference_arguments)
from tests.reference import lamb_reference, lars_reference, schedule_reference


def assert_matches_reference(generation, optimizer, reference, learning_rate, spec, rng):
    """Runs the optimizer and the reference on the same steps; compares weights and ratios."""
    start, grads, result = run(generation, optimizer, rng)
    expected, ratios = reference(start, grads, lr=learning_rate, **reference_arguments(spec))
    for got, want in zip(result, expected):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    got_ratios = [float(r) for r in optimizer.trust_ratios.values()]
    np.testing.assert_allclose(got_ratios, ratios, rtol=2e-5)


def run(generation, optimizer, rng, compiled=False, steps=STEPS):
    named = initial_values(rng)
    variables = generation.make_variables(named)
    grads = gradient_steps(rng, steps)
    apply = generation.compiled_apply(optimizer, variables) if compiled else None
    for step_grads in grads:
        tensors = [tf.constant(g) for g in step_grads]
        if compiled:
            apply(tensors)
        else:
            generation.apply(optimizer, tensors, variables)
    return [v for _, v in named], grads, [np.asarray(v.numpy()) for v in variables]


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
@pytest.mark.parametrize("case", sorted(LAMB_CASES))
def test_lamb_matches_paper_equations(generation, case, rng):
    spec = LAMB_CASES[case]
    optimizer = generation.Lamb(learning_rate=0.01, **spec["kwargs"])
    assert_matches_reference(generation, optimizer, lamb_reference, 0.01, spec, rng)


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
def test_lamb_under_xla_with_schedule_matches_reference(generation, rng):
    schedule = generation.WarmupPolynomialDecay(0.02, total_steps=8, warmup_steps=2, power=2.0)
    optimizer = generation.Lamb(learning_rate=schedule, weight_decay=0.01,
                                exclude_from_weight_decay=["bias"])
    start, grads, result = run(generation, optimizer, rng, compiled=True)
    lrs = [schedule_reference(step, 0.02, 8, 2, power=2.0) for step in range(STEPS)]
    decay_mask = masks(["bias"])
    expected, _ = lamb_reference(start, grads, lr=None, lr_per_step=lrs, weight_decay=0.01,
                                 decay_mask=decay_mask, adapt_mask=decay_mask)
    for got, want in zip(result, expected):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_inf_second_moment_stays_inf_and_its_update_zero(generation, mode):
    """README, Reliability: a finite gradient element above ~1.8e19 squares to Inf in float32;
    v stays Inf on later steps (never NaN) and LAMB's update for that element is 0."""
    variables = generation.make_variables([("kernel", np.ones(2, np.float32))])
    optimizer = generation.Lamb(learning_rate=0.01)
    grads = [np.array([3e19, 0.1], np.float32), np.array([0.1, 0.1], np.float32)]
    if mode == "eager":
        def apply(tensors):
            generation.apply(optimizer, tensors, variables)
    elif mode == "graph":
        optimizer.build(variables)
        apply = tf.function(lambda tensors: generation.apply(optimizer, tensors, variables))
    else:
        apply = generation.compiled_apply(optimizer, variables)
    for g in grads:
        apply([tf.constant(g)])
    with np.errstate(over="ignore", invalid="ignore"):
        (expected,), _ = lamb_reference([np.ones(2, np.float32)], [[g] for g in grads],
                                        lr=0.01, dtype=np.float32)
        expected_v = np.float32(0.999) * (np.float32(0.001) * np.square(grads[0])) + \
            np.float32(0.001) * np.square(grads[1])
    assert expected[0] == 1.0 and np.isinf(expected_v[0])  # the reference's own premise
    np.testing.assert_allclose(variables[0].numpy(), expected, rtol=1e-6)
    v = optimizer._slots["v"][0].numpy()
    assert np.isinf(v[0]) and v[0] > 0, v
    np.testing.assert_allclose(v[1], expected_v[1], rtol=1e-6)


def test_lamb_equals_keras_lamb_where_semantics_coincide():
    """With weight_decay=0 the paper and Keras 3's own Lamb agree; ours must match it."""
    kwargs = dict(learning_rate=0.01, beta_1=0.85, beta_2=0.99, epsilon=1e-6)
    ours = run(Keras3, Keras3.Lamb(**kwargs), np.random.default_rng(7))[2]
    theirs = run(Keras3, keras.optimizers.Lamb(**kwargs), np.random.default_rng(7))[2]
    assert len(ours) == len(theirs) == len(SHAPES)
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_keras_lamb_differs_when_decay_is_on():
    """Why we exist: with decay, Keras's Lamb leaves the paper; ours stays on it."""
    kwargs = dict(learning_rate=0.05, weight_decay=0.1)
    theirs = run(Keras3, keras.optimizers.Lamb(**kwargs), np.random.default_rng(7))
    start, grads, _ = theirs
    expected, _ = lamb_reference(start, grads, lr=0.05, weight_decay=0.1)
    kernel = 0
    assert not np.allclose(theirs[2][kernel], expected[kernel], rtol=1e-4)
    ours = run(Keras3, Keras3.Lamb(**kwargs), np.random.default_rng(7))[2]
    np.testing.assert_allclose(ours[kernel], expected[kernel], rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
@pytest.mark.parametrize("case", sorted(LARS_CASES))
def test_lars_matches_mlperf_equations(generation, case, rng):
    spec = LARS_CASES[case]
    optimizer = generation.Lars(learning_rate=0.5, **spec["kwargs"])
    assert_matches_reference(generation, optimizer, lars_reference, 0.5, spec, rng)


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
@pytest.mark.parametrize("algorithm", ["Lamb", "Lars"])
def test_sparse_gradient_equals_dense_equivalent(generation, algorithm, rng):
    table = rng.normal(size=(6, 3)).astype(np.float32)
    rows = rng.normal(size=(4, 3)).astype(np.float32)
    indices = tf.constant([0, 2, 2, 5])  # a repeated index must be summed
    sparse = tf.IndexedSlices(tf.constant(rows), indices, dense_shape=tf.constant([6, 3]))
    dense = tf.convert_to_tensor(sparse)
    results = []
    for gradient in (sparse, dense):
        variables = generation.make_variables([("embeddings/table", table)])
        optimizer = getattr(generation, algorithm)(learning_rate=0.1, weight_decay=0.01)
        for _ in range(3):
            generation.apply(optimizer, [gradient], variables)
        results.append(variables[0].numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-7)
    assert not np.allclose(results[0], table)


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
def test_state_is_float32_for_bfloat16_variables(generation, rng):
    values = rng.normal(size=(8, 8)).astype(np.float32)
    variable = generation.make_variables([("dense/kernel", tf.constant(values, tf.bfloat16))])
    optimizer = generation.Lamb(learning_rate=0.01, weight_decay=0.01)
    gradient = tf.constant(rng.normal(size=(8, 8)), tf.bfloat16)
    for _ in range(3):
        generation.apply(optimizer, [gradient], variable)
    slots = [v for v in optimizer.variables if tuple(v.shape) == (8, 8)]
    assert len(slots) == 2 and all(tf.as_dtype(s.dtype) == tf.float32 for s in slots)
    moved = tf.cast(variable[0], tf.float32).numpy()
    assert np.all(np.isfinite(moved)) and not np.allclose(moved, values)


@pytest.mark.parametrize(
    "shape", [(), (7,), (32, 32), (48, 64), (33, 35), (4096,), (3, 3, 8, 16), (1024, 1),
              (4096, 1024)])
@pytest.mark.parametrize("compiled", [False, True], ids=["graph", "xla"])
def test_l2_norm_matches_numpy(shape, compiled, rng):
    from lamb_tf import core

    value = rng.normal(size=shape).astype(np.float32)
    norm = tf.function(core.l2_norm, jit_compile=compiled)(tf.constant(value))
    np.testing.assert_allclose(float(norm), np.linalg.norm(value.astype(np.float64)),
                               rtol=1e-6)


def test_l2_norm_under_xla_on_the_cpu_fuses_the_squares_into_one_read():
    """The square must not be written out: XLA fuses it into the matrix-vector product only."""
    from benchmarks.norm_profile import full_size_results
    from lamb_tf import core

    value = tf.ones([256, 512])
    compiled = tf.function(core.l2_norm, jit_compile=True)
    hlo = compiled.experimental_get_compiler_ir(value)(stage="optimized_hlo")
    written = full_size_results(hlo, (256, 512))
    assert not written, written
    assert "dot(" in hlo


def test_l2_norm_in_graph_mode_is_one_fused_reduction():
    """TensorFlow's graph kernels must not write the squares out (a full-size temporary)."""
    from lamb_tf import core

    graph = tf.function(core.l2_norm).get_concrete_function(tf.TensorSpec([256, 512])).graph
    types = [op.type for op in graph.get_operations()]
    assert "EuclideanNorm" in types and "Square" not in types, types


def _write_ops_by_variable(concrete_function, named_variables):
    """{name: the op types that write that variable} in a traced function's graph."""
    names = {id(variable.handle): name for name, variable in named_variables.items()}
    name_inside = {
        internal.ref(): names.get(id(external))
        for external, internal in zip(concrete_function.captured_inputs,
                                      concrete_function.graph.internal_captures)}
    writes = {}
    for op in concrete_function.graph.get_operations():
        if op.type in ("AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"):
            writes.setdefault(name_inside.get(op.inputs[0].ref()), set()).add(op.type)
    return writes


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
def test_lamb_adds_its_moments_in_place_in_graph_mode(generation):
    """Graph kernels: `assign_add` updates a slot's buffer where `assign` of a new tensor
    allocates one; the moments must take the in-place path (the numeric tests above check that
    the values still follow the paper)."""
    variables = generation.make_variables([("dense/kernel", np.ones((8, 4), np.float32))])
    optimizer = generation.Lamb(1e-3, weight_decay=0.01)
    optimizer.build(variables)
    grads = [tf.ones((8, 4))]
    slots = {"m": optimizer._slots["m"][0], "v": optimizer._slots["v"][0]}
    if generation.name == "keras3":
        step = tf.function(lambda: optimizer.apply(grads, variables))
        slots = {name: slot.value for name, slot in slots.items()}
    else:
        step = tf.function(lambda: optimizer.apply_gradients(zip(grads, variables)))
    writes = _write_ops_by_variable(step.get_concrete_function(), slots)
    assert writes.get("m") == {"AssignAddVariableOp"}, writes
    assert writes.get("v") == {"AssignAddVariableOp"}, writes
