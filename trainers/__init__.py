"""TPUEstimator-style trainers built on tf.distribute and the lamb_tf optimizers."""
