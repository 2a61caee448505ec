"""The ImageNet TFRecord schema: what an image example holds, written and read.

`image/encoded` (JPEG or PNG bytes), `image/format`, `image/class/label` (int64),
`image/height`, `image/width`, `image/channels`, `image/filename`, `image/class/text`, so that
real ImageNet shards (the tensorflow/tpu and Model Garden layout) and ours read the same way.
"""

import tensorflow as tf

from trainers.data.pretraining_records import int64_feature


def bytes_feature(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def serialize_image(encoded, image_format, label, height, width, channels, filename, text):
    feature = {
        "image/encoded": bytes_feature([encoded]),
        "image/format": bytes_feature([image_format.encode()]),
        "image/class/label": int64_feature([label]),
        "image/class/text": bytes_feature([text.encode()]),
        "image/height": int64_feature([height]),
        "image/width": int64_feature([width]),
        "image/channels": int64_feature([channels]),
        "image/filename": bytes_feature([filename.encode()]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
        deterministic=True)


# Only what the readers need; other ImageNet fields (bounding boxes, synsets) may be present.
READ_SPEC = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}
