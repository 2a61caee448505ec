"""The BERT pretraining TFRecord schema (google-research/bert), and Model Garden's v2 names.

Files hold tf.train.Examples with `input_ids`, `input_mask`, `segment_ids` [max_seq_length]
int64, `masked_lm_positions`, `masked_lm_ids` [max_predictions_per_seq] int64,
`masked_lm_weights` [max_predictions_per_seq] float and `next_sentence_labels` [1] int64
(1 = B is a random sentence). Model Garden's v2 files say `input_word_ids` / `input_type_ids`
instead of `input_ids` / `segment_ids`. Readers hand the model Model Garden's input names.
"""

import tensorflow as tf

from trainers.data import files as files_lib

# file name -> model input name; the v1 (google-research/bert) and v2 (Model Garden) namings.
V1_NAMES = {
    "input_ids": "input_word_ids",
    "input_mask": "input_mask",
    "segment_ids": "input_type_ids",
    "masked_lm_positions": "masked_lm_positions",
    "masked_lm_ids": "masked_lm_ids",
    "masked_lm_weights": "masked_lm_weights",
    "next_sentence_labels": "next_sentence_labels",
}
V2_NAMES = {name: name for name in V1_NAMES.values()}
PREDICTION_FEATURES = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")


def int64_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def float_feature(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def serialize_instance(instance, max_seq_length, max_predictions_per_seq):
    """One Instance (trainers.data.instances) as a serialized v1 tf.train.Example."""
    length = len(instance.token_ids)
    if length > max_seq_length:
        raise ValueError(f"An instance has {length} tokens, more than max_seq_length="
                         f"{max_seq_length}.")
    padding = [0] * (max_seq_length - length)
    num_masked = len(instance.masked_positions)
    prediction_padding = [0] * (max_predictions_per_seq - num_masked)
    features = {
        "input_ids": int64_feature(instance.token_ids + padding),
        "input_mask": int64_feature([1] * length + padding),
        "segment_ids": int64_feature(instance.segment_ids + padding),
        "masked_lm_positions": int64_feature(instance.masked_positions + prediction_padding),
        "masked_lm_ids": int64_feature(instance.masked_label_ids + prediction_padding),
        "masked_lm_weights": float_feature([1.0] * num_masked + prediction_padding),
        "next_sentence_labels": int64_feature([1 if instance.is_random_next else 0]),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    # Map entries serialize in an order that varies between processes unless asked not to.
    return example.SerializeToString(deterministic=True)


def naming_of(example):
    """V1_NAMES or V2_NAMES, whichever the tf.train.Example's keys follow; else a clear error."""
    keys = set(example.features.feature.keys())
    for naming in (V1_NAMES, V2_NAMES):
        if set(naming) <= keys:
            return naming
    missing_v1 = sorted(set(V1_NAMES) - keys)
    raise ValueError(
        f"Records are not BERT pretraining examples: they lack {missing_v1} (google-research/bert "
        f"names) and {sorted(set(V2_NAMES) - keys)} (Model Garden v2 names); they have "
        f"{sorted(keys)}. Make them with `python -m trainers.data.create_pretraining_data`.")


def shapes_of(example, naming):
    """(max_seq_length, max_predictions_per_seq) a record was written with."""
    feature = example.features.feature
    id_name = next(name for name, model_name in naming.items() if model_name == "input_word_ids")
    return len(feature[id_name].int64_list.value), len(feature["masked_lm_ids"].int64_list.value)


def check_file(path, max_seq_length, max_predictions_per_seq):
    """The file's naming, after checking that its first record has the configured shapes."""
    example = tf.train.Example.FromString(files_lib.first_record(path))
    try:
        naming = naming_of(example)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    seq_length, predictions = shapes_of(example, naming)
    problems = []
    if seq_length != max_seq_length:
        problems.append(f"max_seq_length={seq_length} but the config says "
                        f"max_seq_length={max_seq_length}")
    if predictions != max_predictions_per_seq:
        problems.append(f"max_predictions_per_seq={predictions} but the config says "
                        f"max_predictions_per_seq={max_predictions_per_seq}")
    if problems:
        raise ValueError(
            f"{path} was written with " + "; and ".join(problems) + ". Set the config to the "
            "file's values, or re-create the data with the config's values.")
    return naming


def feature_spec(naming, max_seq_length, max_predictions_per_seq):
    """tf.io.parse_example spec for the file names of `naming`."""
    spec = {}
    for file_name, model_name in naming.items():
        if model_name in ("input_word_ids", "input_mask", "input_type_ids"):
            spec[file_name] = tf.io.FixedLenFeature([max_seq_length], tf.int64)
        elif model_name == "masked_lm_weights":
            spec[file_name] = tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32)
        elif model_name in PREDICTION_FEATURES:
            spec[file_name] = tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64)
        else:
            spec[file_name] = tf.io.FixedLenFeature([1], tf.int64)
    return spec


def parser(naming, max_seq_length, max_predictions_per_seq):
    """A function from a batch of serialized records to Model Garden's input dict (int32 ids)."""
    spec = feature_spec(naming, max_seq_length, max_predictions_per_seq)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        inputs = {}
        for file_name, model_name in naming.items():
            value = parsed[file_name]
            inputs[model_name] = tf.cast(value, tf.int32) if value.dtype == tf.int64 else value
        return inputs

    return parse
