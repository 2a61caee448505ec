"""The TPUEstimator-style loop: compiled multi-step training, checkpoints, eval, summaries.

`run(task, experiment, model_dir, mode)` does everything a task does not: the strategy, the
global batch, mixed precision, gradient accumulation, `iterations_per_loop` updates per compiled
`tf.function`, auto-resume from `model_dir` (model, optimizer slots, step, loss scale and the
position in the training data), `init_checkpoint`, eval, TensorBoard summaries, preemption
(SIGTERM) and NaN handling.
"""

import json
import math
import os
import time

import tensorflow as tf
import tf_keras
from absl import logging
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context as eager_context

from trainers import checkpointing
from trainers import distribution
from trainers import health
from trainers import model_dir_lock
from trainers import optimization
from trainers import preemption as preemption_lib
from trainers import recovery as recovery_lib
from trainers import storage
from trainers import input as input_lib
from trainers.data import files as files_lib
from lamb_tf import noise_scale

MODES = ("train", "eval", "train_and_eval", "continuous_eval")
EVAL_REPORT_SECONDS = 10.0
NOISE_SCALE_DECAY = 0.99  # per update, for each of the two noise-scale estimates
NOISE_SCALE_MODES = ("auto", "split", "disabled")


class NonFiniteLossError(RuntimeError):
    pass


def _set_precision(dtype):
    policies = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
    if dtype not in policies:
        raise ValueError(f"Unknown dtype {dtype!r}; choose one of {list(policies)}.")
    tf_keras.mixed_precision.set_global_policy(policies[dtype])


def _dense(gradient):
    return tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient


def _without_addn_scheduling(function):
    """`function`, called with Grappler's memory optimizer kept from scheduling AddN ops.

    By default that optimizer rewrites an AddN of 3+ inputs with a static shape into a
    TemporaryVariable, AssignAdds and a DestroyTemporaryVariable whenever its static peak-memory
    estimate passes 80% of the device's memory (a GPU's, or 256 MB for a CPU). Inside a lowered
    while loop the temporary can be created in the loop's exit iteration, whose destroy never
    runs; it stays in the eager context's step container ("__per_step_0"), which outlives the
    call, so the next call of the loop creates the same name and fails with AlreadyExistsError.
    The micro-batch loop's static shapes (needed under XLA) made its AddNs eligible.
    Swapping heuristics, the rest of the default, stay on; only this call's options change.
    """
    def call(*args):
        ctx = eager_context.context()
        options = ctx.function_call_options
        config = config_pb2.ConfigProto()
        config.ParseFromString(options.config_proto_serialized)
        rewrite = config.graph_options.rewrite_options
        if rewrite.memory_optimization == rewriter_config_pb2.RewriterConfig.DEFAULT_MEM_OPT:
            rewrite.memory_optimization = rewriter_config_pb2.RewriterConfig.SWAPPING_HEURISTICS
        ctx.function_call_options = eager_context.FunctionCallOptions(
            executor_type=options.executor_type, config_proto=config)
        try:
            return function(*args)
        finally:
            ctx.function_call_options = options

    return call


def _split_batch(tensor, parts, part_size):
    """[parts * part_size, ...] -> [parts, part_size, ...], static shapes kept where known."""
    inner = tensor.shape[1:]
    if inner.is_fully_defined():
        shape = [parts, part_size] + inner.as_list()
    else:
        shape = tf.concat([[parts, part_size], tf.shape(tensor)[1:]], 0)
    return tf.reshape(tensor, shape)


def _dropout_generators(model):
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


class Runner:
    """One experiment in one model_dir; `run` below is the usual entry point."""

    def __init__(self, task, experiment, model_dir, strategy=None):
        self.task = task
        self.experiment = experiment
        self.trainer = experiment.trainer
        self.model_dir = model_dir
        runtime = experiment.runtime
        storage.check_path("model_dir", model_dir)
        if self.trainer.num_accumulation_steps < 1:
            raise ValueError(f"num_accumulation_steps={self.trainer.num_accumulation_steps} "
                             "must be >= 1.")
        if self.trainer.iterations_per_loop < 1:
            raise ValueError(f"iterations_per_loop={self.trainer.iterations_per_loop} must be "
                             ">= 1.")
        self.strategy = strategy or distribution.make_strategy(runtime)
        self.num_replicas = self.strategy.num_replicas_in_sync
        self.is_chief = distribution.is_chief(self.strategy)
        self.micro_batch_size = distribution.check_batch(
            "train_batch_size", self.trainer.train_batch_size, self.num_replicas,
            self.trainer.num_accumulation_steps)
        # The gradient noise scale needs gradients at two batch sizes: several replicas or
        # micro-batches give them; with one of each, noise_scale=split cuts each batch.
        mode = self.trainer.noise_scale
        if mode not in NOISE_SCALE_MODES:
            raise ValueError(f"trainer.noise_scale={mode!r}; choose one of "
                             f"{list(NOISE_SCALE_MODES)}.")
        small_batches = self.num_replicas * self.trainer.num_accumulation_steps
        self.noise_scale_split = 2 if mode == "split" and small_batches == 1 else 1
        if self.micro_batch_size % self.noise_scale_split:
            raise ValueError(f"train_batch_size={self.trainer.train_batch_size} is odd: "
                             "trainer.noise_scale=split cuts each batch in two equal halves; "
                             "use an even batch size.")
        self.measures_noise_scale = (mode != "disabled" and
                                     small_batches * self.noise_scale_split > 1)
        self.noise_scale = noise_scale.SmoothedEstimates(NOISE_SCALE_DECAY)
        distribution.check_batch("eval_batch_size", self.trainer.eval_batch_size,
                                 self.num_replicas)
        _set_precision(runtime.dtype)
        self.loss_scaling = runtime.dtype == "float16"
        tf_keras.utils.set_random_seed(runtime.seed)
        # Dropout draws from tf.random.Generator variables, which checkpoints carry: a resumed
        # run then draws the same masks as an uninterrupted one.
        tf_keras.backend.experimental.enable_tf_random_generator()
        with self.strategy.scope():
            self.model = task.build_model()
            optimizer = optimization.build_optimizer(
                experiment.optimizer, self.trainer.num_train_steps,
                task.weight_decay_exclusions())
            if self.loss_scaling:
                optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            self.optimizer.build(self.model.trainable_variables)
            self.metrics = task.build_metrics()
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              dropout_generators=_dropout_generators(self.model))
        # A model whose training pass updates state of its own (batch norm's moving statistics)
        # would train differently on two halves: half-batch statistics, two moving-average
        # updates. There split keeps the whole-batch update and measures the halves in extra
        # passes whose state changes are undone (the dropout generators' included).
        self._split_state = []
        if self.noise_scale_split > 1 and self.model.non_trainable_variables:
            self._split_state = list(self.model.non_trainable_variables) + [
                generator.state for generator in _dropout_generators(self.model)]
        self.train_input = input_lib.TrainInput(task, self.strategy,
                                                self.trainer.train_batch_size, runtime.seed)
        self.weight_norms = (health.WeightNorms(self.model.trainable_variables, model_dir)
                             if self.is_chief else None)
        self._eval_loop = None
        self._savable = None
        self._writers = {}

    # ----------------------------------------------------------------------------- helpers
    @property
    def inner_optimizer(self):
        return self.optimizer.inner_optimizer if self.loss_scaling else self.optimizer

    @property
    def step(self):
        return int(self.inner_optimizer.iterations.numpy())

    def _writer(self, name):
        if name not in self._writers:
            if self.is_chief:
                self._writers[name] = tf.summary.create_file_writer(
                    os.path.join(self.model_dir, name))
            else:
                self._writers[name] = tf.summary.create_noop_writer()
        return self._writers[name]

    # ------------------------------------------------------------------------- restoring
    def _restore_or_initialize(self, latest):
        if latest:
            try:
                storage.retrying(
                    lambda: self.checkpoint.restore(latest).assert_existing_objects_matched(),
                    f"the checkpoint {latest}")
            except (ValueError, AssertionError) as e:
                raise ValueError(
                    f"The checkpoint {latest} in model_dir does not fit this model: {e} "
                    "Use another --model_dir, or the config that wrote it "
                    f"({os.path.join(self.model_dir, 'params.yaml')}).") from None
            logging.info("Resumed from %s at step %d.", latest, self.step)
        elif self.trainer.init_checkpoint:
            self.load_init_checkpoint(self.trainer.init_checkpoint)

    def load_init_checkpoint(self, path):
        """What the task takes from `init_checkpoint` (by default, model weights only: not the
        optimizer state or step)."""
        storage.check_path("init_checkpoint", path)
        self.task.initialize(self.model, path)

    # -------------------------------------------------------------------------- training
    def _train_step_fn(self):
        """The per-replica update: accumulate micro-batch gradients locally, reduce once."""
        task, model, optimizer = self.task, self.model, self.optimizer
        split_state = self._split_state
        # Without model state, split is accumulation over the two halves: the same update.
        split_in_update = 1 if split_state else self.noise_scale_split
        accumulation = self.trainer.num_accumulation_steps * split_in_update
        micro = self.micro_batch_size // split_in_update
        variables = model.trainable_variables
        measure = self.measures_noise_scale
        global_batch = self.trainer.train_batch_size
        small_gradients = self.num_replicas * accumulation
        small_batch = micro
        if split_state:
            small_gradients, small_batch = self.noise_scale_split, micro // self.noise_scale_split

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
                    scaled = optimizer.get_scaled_loss(loss) if self.loss_scaling else loss
                return loss, tape.gradient(scaled, variables)

            if self._jit_scope() == "replica_pass":
                # A function object of this replica's own, traced under its device: one shared
                # by the replicas is compiled for the first device and cannot reach the others'
                # variables.
                loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

            # [k * micro, ...] -> [k, micro, ...] once, then index by the loop counter: a slice
            # t[i * micro:(i + 1) * micro] has a size XLA cannot prove, and it compiles each
            # micro-batch padded to the whole batch (k-fold compute, no memory saved).
            micro_batches = tf.nest.map_structure(
                lambda t: _split_batch(t, accumulation, micro), features)

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
                    lambda t: _split_batch(t, self.noise_scale_split, small_batch), features)
                total = tf.constant(0.0)
                for i in range(self.noise_scale_split):
                    _, half = loss_and_gradients(tf.nest.map_structure(lambda t: t[i], halves))
                    total += small_sq_norm([_dense(g) for g, u in zip(half, used) if u])
                with tf.control_dependencies([total]):
                    restored = [v.assign(value) for v, value in zip(split_state, saved)]
                with tf.control_dependencies(restored):
                    return tf.identity(total)

            loss, gradients = loss_and_gradients(micro_batch(0))
            # Variables the loss does not reach (e.g. an unused pooler) get no update at all.
            used = [g is not None for g in gradients]
            gradients = [_dense(g) for g in gradients if g is not None]
            small_sq_sum = tf.constant(0.0) if split_state else small_sq_norm(gradients)
            if accumulation > 1:
                def body(i, loss_sum, gradient_sums, small_sq_sum):
                    loss, more = loss_and_gradients(micro_batch(i))
                    more = [_dense(g) for g, u in zip(more, used) if u]
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
            if self.loss_scaling:
                gradients = optimizer.get_unscaled_gradients(gradients)
            gradient_norm = tf.linalg.global_norm(gradients)
            # Checked element by element: a finite gradient of 1e20 (bf16 training meets such)
            # has a squared norm that overflows float32, and the optimizers handle it.
            gradients_finite = tf.reduce_all(
                [tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
            estimates = self._noise_scale_estimates(
                context, small_sq_sum, small_gradients, small_batch, gradient_norm,
                global_batch)
            optimizer.apply_gradients(zip(gradients, updated), skip_gradients_aggregation=True)
            return loss, gradient_norm, gradients_finite, estimates

        return replica_step

    def _noise_scale_estimates(self, context, small_sq_sum, count, small_batch, gradient_norm,
                               big_batch):
        """(|G|^2, tr(Sigma)) of this update from the `count` micro-batch gradients of
        `small_batch` examples and the all-reduced one of `big_batch`; zeros if not measured.

        Each micro-batch gradient is normalized by the whole global batch (so that they sum to
        the update's); times big/small it is that micro-batch's mean gradient. For per-example
        losses that is exact; for BERT's masked-LM loss, normalized by masked tokens, it is the
        mean over tokens of a micro-batch up to its share of them.
        """
        if not self.measures_noise_scale:
            return tf.constant(0.0), tf.constant(0.0)
        small_sq_sum = context.all_reduce(tf.distribute.ReduceOp.SUM, small_sq_sum)
        if self.loss_scaling:
            small_sq_sum /= tf.square(tf.cast(self.optimizer.loss_scale, tf.float32))
        scale = big_batch / small_batch
        return noise_scale.unbiased_estimates(small_sq_sum / count * scale ** 2, small_batch,
                                              tf.square(gradient_norm), big_batch)

    def _make_train_loop(self):
        replica_step = self._train_step_fn()
        strategy = self.strategy

        def first_replica(value):
            return strategy.experimental_local_results(value)[0]

        train_input = self.train_input
        if self._jit_scope() == "step":
            # XLA compiles the update, not the loop: iterators cannot live inside XLA.
            replica_step = tf.function(replica_step, jit_compile=True)

        def replica_step_and_position(batch):
            batch, last_position = train_input.take_position(batch)
            return replica_step(batch) + (last_position,)

        @tf.function
        def train_loop(iterator, num_steps):
            loss_sum = tf.constant(0.0)
            gradient_norm = tf.constant(0.0)
            first_non_finite = tf.constant(-1, tf.int64)
            # Sums of the noise-scale estimates over the loop's finite updates, and their count.
            estimate_sums = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
            for _ in tf.range(num_steps):
                # tf.distribute prefetches the next batches to the devices while this step
                # computes; each batch says where its pipeline stands after it.
                loss, gradient_norm, gradients_finite, estimates, last_positions = strategy.run(
                    replica_step_and_position, args=(train_input.next_batch(iterator),))
                train_input.record_position(last_positions)
                loss, gradient_norm = first_replica(loss), first_replica(gradient_norm)
                gradients_finite = first_replica(gradients_finite)
                estimates = [first_replica(e) for e in estimates]
                step = self.inner_optimizer.iterations
                # The loss is computed before the update: a finite loss can come with an Inf
                # gradient, whose update makes the weights NaN.
                finite = tf.math.is_finite(loss) & gradients_finite
                first_non_finite = tf.where((first_non_finite < 0) & ~finite, step,
                                            first_non_finite)
                loss_sum += loss
                counted = finite & tf.reduce_all(tf.math.is_finite(tf.stack(estimates)))
                estimate_sums = tuple(
                    total + tf.where(counted, value, 0.0)
                    for total, value in zip(estimate_sums, estimates + [tf.constant(1.0)]))
            return (loss_sum / tf.cast(num_steps, tf.float32), gradient_norm, first_non_finite,
                    estimate_sums)

        return _without_addn_scheduling(train_loop)

    def _jit_scope(self):
        """What --jit_compile puts in XLA: None without the flag; "step" (the whole update) on
        one replica or a TPU; "replica_pass" (each replica's forward and backward pass) under
        (multi-worker) mirrored, whose all-reduce and update are cross-device calls that XLA
        cannot hold."""
        if not self.experiment.runtime.jit_compile:
            return None
        if self.num_replicas == 1 or isinstance(self.strategy, tf.distribute.TPUStrategy):
            return "step"
        return "replica_pass"

    def train(self, eval_each_checkpoint=False, stop_when=None):
        """Trains to num_train_steps; returns the last eval results when evaluating.

        `stop_when(results)`, with `eval_each_checkpoint`, ends training early after the first
        checkpoint whose eval results it accepts (e.g. a steps-to-target measurement). Eval
        metrics are reduced over the cluster, so every worker stops after the same loop.

        The chief holds the model_dir lock throughout, which also proves model_dir writable
        before any training time is spent.
        """
        if stop_when is not None and not eval_each_checkpoint:
            raise ValueError("stop_when judges eval results: it needs eval_each_checkpoint=True.")
        if not self.is_chief:
            return self._train(eval_each_checkpoint, stop_when, None)
        with model_dir_lock.ModelDirLock(self.model_dir) as lock:
            return self._train(eval_each_checkpoint, stop_when, lock)

    def _train(self, eval_each_checkpoint, stop_when, lock):
        """`lock`: the chief's ModelDirLock, checked before each write (None elsewhere)."""
        trainer = self.trainer
        results = None
        params = checkpointing.ParamsRecord(self.model_dir)
        cluster = {"workers": distribution.worker_count(self.strategy),
                   "replicas": self.num_replicas}
        resuming = bool(checkpointing.checkpoint_steps(self.model_dir))
        if resuming:
            # Every worker checks, before anything is written or restored: a refusal on the
            # chief alone would leave the other workers waiting for it in collectives.
            params.check_compatible(self.experiment)
            params.check_same_cluster(cluster)
            self._check_records()
        stream = self.task.train_stream()
        if resuming:
            params.check_same_stream(stream)
        if self.is_chief:
            checkpointing.remove_interrupted_writes(self.model_dir)
        self.task.validate_inputs("train")
        if eval_each_checkpoint:
            self.task.validate_inputs("eval")
        train_input = self.train_input
        checkpoints = checkpointing.RunCheckpoints(
            self.model_dir, self.checkpoint, train_input.checkpointed_state(),
            self.inner_optimizer.iterations, trainer.keep_checkpoint_max,
            train_input.num_pipelines, train_input.pipeline_id,
            worker_id=None if self.is_chief else self.strategy.cluster_resolver.task_id)
        latest = checkpoints.resume_from
        if cluster["workers"] > 1:
            resume_step = checkpointing.step_of(latest) if latest else 0
            distribution.check_same_on_every_worker(
                self.strategy, "the checkpoint step to resume from", lambda _: resume_step)
        self._restore_or_initialize(latest)
        checkpoints.restore_data_position(self.step)
        iterator = train_input.iterator()
        if self.step >= trainer.num_train_steps:
            logging.info("model_dir %s is already at step %d (num_train_steps=%d): nothing "
                         "to train.", self.model_dir, self.step, trainer.num_train_steps)
            print(f"Already trained: step {self.step} of num_train_steps="
                  f"{trainer.num_train_steps} in {self.model_dir}.")
            return results
        if self.is_chief:
            lock.check()
            self._write_records()
            params.write(self.experiment, self.step, cluster, stream)
            self.weight_norms.start(self.step)
        train_loop = self._make_train_loop()
        save_every = max(1, math.ceil(trainer.save_checkpoints_steps /
                                      trainer.iterations_per_loop)) * trainer.iterations_per_loop
        train_files = self.task.input_files("train")
        # Counted from the last save, not as step % save_every: a run resumed with another
        # iterations_per_loop would otherwise never hit a multiple and save only at the end.
        last_save = first_step = self.step

        stop_requested = False

        def save(evaluate=eval_each_checkpoint):
            nonlocal last_save, results, stop_requested
            if last_save != self.step:
                self._check_savable(checkpoints)
                if lock is not None:
                    lock.check()  # a run that may have lost model_dir must not write to it
                checkpoints.save()
                last_save = self.step
                if evaluate:
                    results = self.evaluate()
                    stop_requested = stop_when is not None and bool(stop_when(results))
            return self.step

        recovery = recovery_lib.LossSpikeRecovery(trainer, self.loss_scaling)
        if recovery.enabled and not latest:
            last_save = None  # a first checkpoint to roll back to
            save()

        timed_steps, timed_seconds = 0, 0.0
        with preemption_lib.Preemption(self.strategy) as preemption:
            while self.step < trainer.num_train_steps:
                start_step = self.step
                num_steps = min(trainer.iterations_per_loop, trainer.num_train_steps - start_step)
                started = time.monotonic()
                with files_lib.naming_corrupt_file(train_files):
                    loss, gradient_norm, first_non_finite, estimate_sums = train_loop(
                        iterator, tf.constant(num_steps))
                loss = float(loss)
                seconds = time.monotonic() - started
                spike = recovery.spike(self.step, loss, int(first_non_finite))
                if spike:
                    last_save = self._roll_back(spike, recovery, checkpoints.latest)
                    continue
                self._check_finite(int(first_non_finite), checkpoints)
                self._add_noise_scale(estimate_sums)
                # The first loop after a start includes tracing: no throughput figure for it.
                examples_per_second = (None if start_step == first_step else
                                       num_steps * trainer.train_batch_size / seconds)
                self._log_train(loss, float(gradient_norm), examples_per_second)
                if examples_per_second is not None:
                    timed_steps += num_steps
                    timed_seconds += seconds
                if self.step >= trainer.num_train_steps or self.step - last_save >= save_every:
                    save()
                    if stop_requested:
                        logging.info("Stopping at step %d: stop_when accepted the eval "
                                     "results.", self.step)
                        break
                # Every worker, every loop: the cluster agrees on the loop to stop after.
                # No eval then: a preempted machine has seconds, not minutes.
                preemption.save_and_exit_if_requested(lambda: save(evaluate=False))
        if timed_steps:
            print(f"throughput: {timed_steps * trainer.train_batch_size / timed_seconds:.1f} "
                  f"examples/s over the last {timed_steps} steps (the first loop, which traces "
                  "and compiles, is left out)")
        return results

    def _check_records(self):
        """Refuses to resume if the task's model_dir records (e.g. the vocab) differ."""
        for name, text in self.task.model_dir_records().items():
            path = os.path.join(self.model_dir, name)
            if tf.io.gfile.exists(path):
                with tf.io.gfile.GFile(path) as f:
                    if f.read() != text:
                        raise ValueError(
                            f"{path} records what the checkpoints in {self.model_dir} were "
                            f"trained with, and this run's {name} differs; resume with the "
                            "same, or pass another --model_dir (with --init_checkpoint to "
                            "start from these weights).")

    def _write_records(self):
        """The task's model_dir records (e.g. the vocab); the chief writes them."""
        for name, text in self.task.model_dir_records().items():
            storage.write_text(os.path.join(self.model_dir, name), text)

    def _roll_back(self, spike, recovery, path):
        """Model and optimizer back to checkpoint `path`; the data stays where it is."""
        restored_step = checkpointing.step_of(path)
        recovery.count_roll_back(spike, path, self.step - restored_step)
        with self._writer("train").as_default(step=self.step):
            tf.summary.scalar("loss_spike_recoveries", recovery.trials)
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return self.step

    def _check_finite(self, first_non_finite, checkpoints):
        if first_non_finite < 0 or self.loss_scaling:
            return  # under fp16 the loss scale skips non-finite steps and shrinks itself
        last = checkpoints.latest or "none (no checkpoint was saved yet)"
        raise NonFiniteLossError(
            f"The training loss or its gradient became NaN or Inf at step {first_non_finite}. "
            f"Nothing was saved after it; the last good checkpoint is {last}. Lower the "
            "learning rate or the warmup's peak, check the data, or use --dtype=float16 for "
            "loss scaling.")

    def _check_savable(self, checkpoints):
        """Refuses to save NaN or Inf weights, or NaN optimizer state: a checkpoint is what a
        rollback, a resume and the error messages call good.

        An Inf in the optimizer state is not poison: a finite gradient element above 1.8e19
        (bf16 training meets such) squares to Inf in a second moment, and that element's update
        is then 0, as it was when the step ran.
        """
        if self._savable is None:
            optimizer_variables = self.optimizer.variables
            if callable(optimizer_variables):
                optimizer_variables = optimizer_variables()
            weights = [v for v in self.model.variables if v.dtype.is_floating]
            state = [v for v in optimizer_variables if v.dtype.is_floating]
            self._savable = tf.function(lambda: tf.reduce_all(
                [tf.reduce_all(tf.math.is_finite(v)) for v in weights] +
                [~tf.reduce_any(tf.math.is_nan(v)) for v in state]))
        if not bool(self._savable()):
            last = checkpoints.latest or "none (no checkpoint was saved yet)"
            raise NonFiniteLossError(
                f"At step {self.step} the weights hold NaN or Inf, or the optimizer state NaN; "
                f"nothing was saved. The last good checkpoint is {last}. Lower the learning rate "
                "or the warmup's peak, or check the data.")

    def _add_noise_scale(self, estimate_sums):
        gradient_sq_norm, trace_sigma, updates = (float(v) for v in estimate_sums)
        if updates and self.measures_noise_scale:
            self.noise_scale.add(gradient_sq_norm / updates, trace_sigma / updates,
                                 int(updates))

    def _log_train(self, loss, gradient_norm, examples_per_second):
        step = self.step
        learning_rate = float(tf.convert_to_tensor(self.inner_optimizer.learning_rate))
        throughput = ("(first loop: tracing included)" if examples_per_second is None
                      else f"{examples_per_second:.1f} examples/s")
        noise = (f"  B_simple {self.noise_scale.b_simple:.3g}" if self.noise_scale.ready
                 else "")
        logging.info("step %d/%d  loss %.4f  lr %.3g  grad_norm %.3g%s  %s",
                     step, self.trainer.num_train_steps, loss, learning_rate, gradient_norm,
                     noise, throughput)
        with self._writer("train").as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("learning_rate", learning_rate)
            tf.summary.scalar("gradient_norm", gradient_norm)
            if examples_per_second is not None:
                tf.summary.scalar("examples_per_second", examples_per_second)
            if self.noise_scale.ready:
                tf.summary.scalar("noise_scale/b_simple", self.noise_scale.b_simple)
                tf.summary.scalar("noise_scale/gradient_sq_norm",
                                  self.noise_scale.gradient_sq_norm)
                tf.summary.scalar("noise_scale/trace_sigma", self.noise_scale.trace_sigma)
            if self.loss_scaling:
                tf.summary.scalar("loss_scale",
                                  float(tf.convert_to_tensor(self.optimizer.loss_scale)))
            ratios = getattr(self.inner_optimizer, "trust_ratios", None)
            if ratios:
                tf.summary.histogram("trust_ratio",
                                     tf.stack([tf.convert_to_tensor(r) for r in ratios.values()]))
            if self.weight_norms:
                norms, warnings = self.weight_norms.check(step)
                self.weight_norms.write_summaries(norms, self.weight_norms.start(step))
                health.log_warnings(warnings)

    # ------------------------------------------------------------------------------ eval
    def evaluate(self):
        """Metrics over the eval set (every example once) at the current weights."""
        self.task.validate_inputs("eval")
        steps = self.task.eval_steps(self.trainer.eval_batch_size)
        if self.trainer.max_eval_steps:
            steps = min(steps, self.trainer.max_eval_steps)
        dataset = self.strategy.distribute_datasets_from_function(
            lambda context: self.task.input_fn("eval", self.trainer.eval_batch_size, context))
        for metric in self.metrics:
            metric.reset_state()
        started = last_report = time.monotonic()
        eval_loop, iterator = self._make_eval_loop(), iter(dataset)
        # In chunks, so that a long eval says how far it is every EVAL_REPORT_SECONDS.
        chunk = max(1, min(steps, self.trainer.iterations_per_loop))
        with files_lib.naming_corrupt_file(self.task.input_files("eval")):
            for done in range(0, steps, chunk):
                eval_loop(iterator, tf.constant(min(chunk, steps - done)))
                if time.monotonic() - last_report > EVAL_REPORT_SECONDS and done + chunk < steps:
                    last_report = time.monotonic()
                    logging.info("eval: %d/%d steps after %.0f s", done + chunk, steps,
                                 last_report - started)
        results = {metric.name: float(metric.result()) for metric in self.metrics}
        results.update(self.task.model_eval_results(self.model))
        step = self.step
        logging.info("eval at step %d (%d steps, %.1f s): %s", step, steps,
                     time.monotonic() - started,
                     "  ".join(f"{k} {v:.4f}" for k, v in results.items()))
        with self._writer("eval").as_default(step=step):
            for name, value in results.items():
                tf.summary.scalar(name, value)
        if self.weight_norms:
            start = self.weight_norms.start(step)
            logging.info("weight norms at step %d, largest growth since step %d: %s", step,
                         self.weight_norms.start_step,
                         self.weight_norms.largest_growth(self.weight_norms.norms(), start))
        health.log_warnings(self.task.health_warnings(results))
        if self.is_chief:
            tf.io.gfile.makedirs(self.model_dir)
            storage.write_text(os.path.join(self.model_dir, "eval_results.json"),
                               json.dumps({"step": step, **results}, indent=2))
        return results

    def _make_eval_loop(self):
        """The compiled eval loop, traced once and reused at every checkpoint's evaluation."""
        if self._eval_loop is None:
            task, model, metrics, strategy = self.task, self.model, self.metrics, self.strategy

            def replica_step(features):
                outputs = model(task.model_inputs(features), training=False)
                task.update_metrics(metrics, features, outputs)

            @tf.function
            def eval_loop(iterator, num_steps):
                for _ in tf.range(num_steps):
                    strategy.run(replica_step, args=(next(iterator),))

            self._eval_loop = eval_loop
        return self._eval_loop

    def evaluate_latest(self):
        latest = checkpointing.newest_whole_checkpoint(self.model_dir, 0, move_broken=False)
        if not latest:
            raise FileNotFoundError(f"No checkpoint in {self.model_dir} to evaluate; train "
                                    "first (--mode=train or train_and_eval).")
        self._restore_model(latest)
        return self.evaluate()

    def _restore_model(self, path):
        self.checkpoint.read(path).expect_partial()

    def continuous_eval(self, timeout_seconds=3600):
        """Evaluates each new checkpoint until one at num_train_steps has been evaluated."""
        results = None
        for path in tf.train.checkpoints_iterator(self.model_dir, timeout=timeout_seconds):
            self._restore_model(path)
            results = self.evaluate()
            if self.step >= self.trainer.num_train_steps:
                break
        return results


def run(task, experiment, model_dir, mode="train", strategy=None):
    """Runs `mode` for `task` in `model_dir`; returns the last eval results, if any."""
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {list(MODES)}.")
    runner = Runner(task, experiment, model_dir, strategy=strategy)
    if mode == "train":
        runner.train()
        return None
    if mode == "train_and_eval":
        return runner.train(eval_each_checkpoint=True) or runner.evaluate()
    if mode == "eval":
        return runner.evaluate_latest()
    return runner.continuous_eval()
