"""One adapter per Keras generation, so the same numeric tests run against both twins."""

import keras
import tensorflow as tf
import tf_keras

import lamb_tf
from lamb_tf import legacy


class Keras3:
    name = "keras3"
    Lamb = lamb_tf.Lamb
    Lars = lamb_tf.Lars
    WarmupPolynomialDecay = lamb_tf.WarmupPolynomialDecay

    @staticmethod
    def make_variables(named_arrays):
        # Keras 3 variable names cannot hold '/', so paths here are flat.
        return [keras.Variable(value, name=name.replace("/", "_"))
                for name, value in named_arrays]

    @staticmethod
    def apply(optimizer, grads, variables):
        optimizer.apply(grads, variables)

    @staticmethod
    def compiled_apply(optimizer, variables):
        optimizer.build(variables)
        return tf.function(lambda grads: optimizer.apply(grads, variables), jit_compile=True)

    @staticmethod
    def serialize(optimizer):
        return keras.optimizers.serialize(optimizer)

    @staticmethod
    def deserialize(config):
        return keras.optimizers.deserialize(config)


class Legacy:
    name = "legacy"
    Lamb = legacy.Lamb
    Lars = legacy.Lars
    WarmupPolynomialDecay = legacy.WarmupPolynomialDecay

    @staticmethod
    def make_variables(named_arrays):
        return [tf.Variable(value, name=name) for name, value in named_arrays]

    @staticmethod
    def apply(optimizer, grads, variables):
        optimizer.apply_gradients(zip(grads, variables))

    @staticmethod
    def compiled_apply(optimizer, variables):
        optimizer.build(variables)
        return tf.function(
            lambda grads: optimizer.apply_gradients(zip(grads, variables)), jit_compile=True)

    @staticmethod
    def serialize(optimizer):
        return tf_keras.optimizers.serialize(optimizer)

    @staticmethod
    def deserialize(config):
        return tf_keras.optimizers.deserialize(config)


GENERATIONS = [Keras3, Legacy]
