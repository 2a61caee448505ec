"""Reading pretraining TFRecords back in tests: each example's features, with the original token
ids put back at its masked positions."""

import tensorflow as tf


def unmasked_examples(paths):
    """Yield (features, input ids with every masked position holding its original id) for each
    tf.train.Example in `paths`."""
    for path in paths:
        for record in tf.data.TFRecordDataset(path):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            ids = list(feature["input_ids"].int64_list.value)
            # Masking put [MASK] or a random vocab id at some positions; the text's own id is
            # in masked_lm_ids where the weight is 1.
            for position, original, weight in zip(feature["masked_lm_positions"].int64_list.value,
                                                  feature["masked_lm_ids"].int64_list.value,
                                                  feature["masked_lm_weights"].float_list.value):
                if weight:
                    ids[position] = original
            yield feature, ids
