"""One replica's share of one update: gradients of its micro-batches accumulated locally,
reduced across replicas once, applied; with the sums the gradient noise scale is measured from.

Orbit's `StandardTrainer.train_step` in our terms. `make_replica_step` returns the function that
`strategy.run` calls on each replica's batch; the compiled loop around it is
`trainers.train_loop`.
"""

import dataclasses

import tensorflow as tf

from lamb_tf import noise_scale

NOISE_SCALE_MODES = ("auto", "split", "disabled")


@dataclasses.dataclass(frozen=True)
class NoiseScaleLayout:
    """Where the second batch size of the gradient noise scale comes from.

    Several replicas or micro-batches give gradients of a smaller batch; with one of each,
    `trainer.noise_scale=split` cuts each batch in `split` parts.
    """
    split: int
    measured: bool


def noise_scale_layout(trainer, num_replicas, micro_batch_size):
    mode = trainer.noise_scale
    if mode not in NOISE_SCALE_MODES:
        raise ValueError(f"trainer.noise_scale={mode!r}; choose one of "
                         f"{list(NOISE_SCALE_MODES)}.")
    small_batches = num_replicas * trainer.num_accumulation_steps
    split = 2 if mode == "split" and small_batches == 1 else 1
    if micro_batch_size % split:
        raise ValueError(f"train_batch_size={trainer.train_batch_size} is odd: "
                         "trainer.noise_scale=split cuts each batch in two equal halves; "
                         "use an even batch size.")
    return NoiseScaleLayout(split=split, measured=mode != "disabled" and
                            small_batches * split > 1)


def dropout_generators(model):
    """The tf.random.Generators of a tf_keras model's random layers, in a fixed order.

    tf_keras does not put them in checkpoints; saving them is what makes a resumed run draw
    the same dropout masks as an uninterrupted one. They exist once the model has been called
    in training mode (tasks build models that way).
    """
    generators = []
    for layer in model.submodules:
        random_generator = getattr(layer, "_random_generator", None)
        generator = getattr(random_generator, "_generator", None)
        if isinstance(generator, tf.random.Generator):
            generators.append(generator)
    return generators


def jit_scope(jit_compile, strategy):
    """What --jit_compile puts in XLA: None without the flag; "step" (the whole update) on
    one replica or a TPU; "replica_pass" (each replica's forward and backward pass) under
    (multi-worker) mirrored, whose all-reduce and update are cross-device calls that XLA
    cannot hold."""
    if not jit_compile:
        return None
    if (strategy.num_replicas_in_sync == 1 or
            isinstance(strategy, tf.distribute.TPUStrategy)):
        return "step"
    return "replica_pass"


def dense(gradient):
    return tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient


def split_batch(tensor, parts, part_size):
    """[parts * part_size, ...] -> [parts, part_size, ...], static shapes kept where known."""
    inner = tensor.shape[1:]
    if inner.is_fully_defined():
        shape = [parts, part_size] + inner.as_list()
    else:
        shape = tf.concat([[parts, part_size], tf.shape(tensor)[1:]], 0)
    return tf.reshape(tensor, shape)


def make_replica_step(task, model, optimizer, trainer, layout, num_replicas, micro_batch_size,
                      loss_scaling, jit_replica_pass):
    """The per-replica update: accumulate micro-batch gradients locally, reduce once.

    Returns `replica_step(features) -> (loss, gradient_norm, gradients_finite,
    (|G|^2, tr(Sigma)) estimates)`.
    """
    # A model whose training pass updates state of its own (batch norm's moving statistics)
    # would train differently on two halves: half-batch statistics, two moving-average
    # updates. There split keeps the whole-batch update and measures the halves in extra
    # passes whose state changes are undone (the dropout generators' included).
    split_state = []
    if layout.split > 1 and model.non_trainable_variables:
        split_state = list(model.non_trainable_variables) + [
            generator.state for generator in dropout_generators(model)]
    # Without model state, split is accumulation over the two halves: the same update.
    split_in_update = 1 if split_state else layout.split
    accumulation = trainer.num_accumulation_steps * split_in_update
    micro = micro_batch_size // split_in_update
    variables = model.trainable_variables
    measure = layout.measured
    global_batch = trainer.train_batch_size
    small_gradients = num_replicas * accumulation
    small_batch = micro
    if split_state:
        small_gradients, small_batch = layout.split, micro // layout.split

    def noise_scale_estimates(context, small_sq_sum, gradient_norm):
        """(|G|^2, tr(Sigma)) of this update from the `small_gradients` micro-batch gradients
        of `small_batch` examples and the all-reduced one of `global_batch`; zeros if not
        measured.

        Each micro-batch gradient is normalized by the whole global batch (so that they sum to
        the update's); times big/small it is that micro-batch's mean gradient. For per-example
        losses that is exact; for BERT's masked-LM loss, normalized by masked tokens, it is the
        mean over tokens of a micro-batch up to its share of them.
        """
        if not measure:
            return tf.constant(0.0), tf.constant(0.0)
        small_sq_sum = context.all_reduce(tf.distribute.ReduceOp.SUM, small_sq_sum)
        if loss_scaling:
            small_sq_sum /= tf.square(tf.cast(optimizer.loss_scale, tf.float32))
        scale = global_batch / small_batch
        return noise_scale.unbiased_estimates(
            small_sq_sum / small_gradients * scale ** 2, small_batch, tf.square(gradient_norm),
            global_batch)

    def replica_step(features):
        context = tf.distribute.get_replica_context()
        # Normalize by the whole global batch, so that cutting it changes nothing.
        normalizers = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                         task.loss_normalizers(features))
        normalizers = {k: tf.maximum(v, 1e-9) for k, v in normalizers.items()}

        def loss_and_gradients(batch):
            with tf.GradientTape() as tape:
                outputs = model(task.model_inputs(batch), training=True)
                sums = task.loss_sums(batch, outputs)
                loss = tf.add_n([tf.cast(sums[k], tf.float32) / normalizers[k]
                                 for k in sorted(sums)])
                scaled = optimizer.get_scaled_loss(loss) if loss_scaling else loss
            return loss, tape.gradient(scaled, variables)

        if jit_replica_pass:
            # A function object of this replica's own, traced under its device: one shared
            # by the replicas is compiled for the first device and cannot reach the others'
            # variables.
            loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

        # [k * micro, ...] -> [k, micro, ...] once, then index by the loop counter: a slice
        # t[i * micro:(i + 1) * micro] has a size XLA cannot prove, and it compiles each
        # micro-batch padded to the whole batch (k-fold compute, no memory saved).
        micro_batches = tf.nest.map_structure(
            lambda t: split_batch(t, accumulation, micro), features)

        def micro_batch(i):
            return tf.nest.map_structure(lambda t: t[i], micro_batches)

        def small_sq_norm(gradients):
            return noise_scale.squared_norm(gradients) if measure else tf.constant(0.0)

        def halves_sq_norm(features, used):
            """Summed squared norms of the gradients of the batch's halves, from passes
            that leave the model's state (moving statistics, dropout generators) as it
            was: only the whole batch's pass trains it."""
            saved = [tf.identity(v) for v in split_state]
            halves = tf.nest.map_structure(
                lambda t: split_batch(t, layout.split, small_batch), features)
            total = tf.constant(0.0)
            for i in range(layout.split):
                _, half = loss_and_gradients(tf.nest.map_structure(lambda t: t[i], halves))
                total += small_sq_norm([dense(g) for g, u in zip(half, used) if u])
            with tf.control_dependencies([total]):
                restored = [v.assign(value) for v, value in zip(split_state, saved)]
            with tf.control_dependencies(restored):
                return tf.identity(total)

        loss, gradients = loss_and_gradients(micro_batch(0))
        # Variables the loss does not reach (e.g. an unused pooler) get no update at all.
        used = [g is not None for g in gradients]
        gradients = [dense(g) for g in gradients if g is not None]
        small_sq_sum = tf.constant(0.0) if split_state else small_sq_norm(gradients)
        if accumulation > 1:
            def body(i, loss_sum, gradient_sums, small_sq_sum):
                loss, more = loss_and_gradients(micro_batch(i))
                more = [dense(g) for g, u in zip(more, used) if u]
                return (i + 1, loss_sum + loss, [s + g for s, g in zip(gradient_sums, more)],
                        small_sq_sum + small_sq_norm(more))

            _, loss, gradients, small_sq_sum = tf.while_loop(
                lambda i, *_: i < accumulation, body,
                (tf.constant(1), loss, gradients, small_sq_sum))
        if split_state and measure:
            small_sq_sum = halves_sq_norm(features, used)
        updated = [v for v, u in zip(variables, used) if u]
        gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        loss = context.all_reduce(tf.distribute.ReduceOp.SUM, loss)
        if loss_scaling:
            gradients = optimizer.get_unscaled_gradients(gradients)
        gradient_norm = tf.linalg.global_norm(gradients)
        # Checked element by element: a finite gradient of 1e20 (bf16 training meets such)
        # has a squared norm that overflows float32, and the optimizers handle it.
        gradients_finite = tf.reduce_all(
            [tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
        estimates = noise_scale_estimates(context, small_sq_sum, gradient_norm)
        optimizer.apply_gradients(zip(gradients, updated), skip_gradients_aggregation=True)
        return loss, gradient_norm, gradients_finite, estimates

    return replica_step
