"""The BERT pretraining input_fn: validated TFRecord files to per-replica batches.

Batches are dicts in Model Garden's names (`input_word_ids`, `input_mask`, `input_type_ids`,
`masked_lm_positions`, `masked_lm_ids`, `masked_lm_weights`, `next_sentence_labels`), read from
files in either google-research/bert's or Model Garden's v2 naming. Eval batches add
`is_real_example` (1 for data, 0 for padding).
"""


import tensorflow as tf

from trainers.data import batching
from trainers.data import positions
from trainers.data import pretraining_records


class PretrainingInput(batching.RecordFiles):
    """The files behind `file_patterns`, checked once, and the datasets read from them.

    Construction is the validation before training: patterns must match files, and each file's
    first record must have the configured `max_seq_length` and `max_predictions_per_seq`.
    """

    def __init__(self, file_patterns, max_seq_length, max_predictions_per_seq,
                 shuffle_buffer_size=10000, cycle_length=8):
        super().__init__(file_patterns, what="pretraining data")
        self.max_seq_length = max_seq_length
        self.max_predictions_per_seq = max_predictions_per_seq
        self.shuffle_buffer_size = shuffle_buffer_size
        self.cycle_length = cycle_length
        namings = {path: pretraining_records.check_file(path, max_seq_length,
                                                        max_predictions_per_seq)
                   for path in self.files}
        self.naming = namings[self.files[0]]
        mixed = [path for path, naming in namings.items() if naming != self.naming]
        if mixed:
            raise ValueError(f"{mixed[0]} uses other feature names than {self.files[0]} "
                             "(google-research/bert vs Model Garden v2); read them separately.")
        self._parse = pretraining_records.parser(self.naming, max_seq_length,
                                                 max_predictions_per_seq)

    def train_dataset(self, global_batch_size, input_context=None, seed=None,
                      after=positions.NOTHING_READ):
        """Endless shuffled batches of the per-replica size, the last partial batch dropped,
        starting after data position `after` (see `trainers.data.positions`).

        Each input pipeline reads its own files when there are at least as many files as
        pipelines. With `seed`, the order is the same on every run.
        """
        batch_size = batching.per_replica_batch_size(global_batch_size, input_context)
        records = positions.training_records(self.files, input_context, seed, self.cycle_length,
                                             self.shuffle_buffer_size, after)

        def parse(serialized, where):
            inputs = self._parse(serialized)
            inputs[positions.POSITION_KEY] = where
            return inputs

        return (records.batch(batch_size, drop_remainder=True)
                .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))

    def eval_dataset(self, global_batch_size, input_context=None):
        """Exactly `eval_steps` batches per replica; every example appears once, padding is
        all-zero records flagged `is_real_example=0`."""
        real = batching.pipeline_records(self.files, input_context).map(
            lambda record: (record, tf.constant(1.0)))
        padding = (tf.constant(self._padding_record()), tf.constant(0.0))

        def parse(serialized, is_real):
            inputs = self._parse(serialized)
            inputs["is_real_example"] = is_real
            return inputs

        return (batching.padded_eval_batches(real, padding, self.num_examples,
                                             global_batch_size, input_context)
                .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))

    def _padding_record(self):
        spec = pretraining_records.feature_spec(self.naming, self.max_seq_length,
                                                self.max_predictions_per_seq)
        feature = {}
        for name, fixed in spec.items():
            zeros = [0] * fixed.shape[0]
            feature[name] = (pretraining_records.float_feature(zeros) if fixed.dtype == tf.float32
                             else pretraining_records.int64_feature(zeros))
        return tf.train.Example(
            features=tf.train.Features(feature=feature)).SerializeToString()

