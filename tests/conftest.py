import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices stand in for two GPUs/TPU cores; this must happen before TF starts.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


class _NodeIdProbe(pytest.Item):
    def runtest(self):
        pass


def pytest_sessionstart(session):
    """Refuses to run when pytest-xdist's `--dist loadgroup` would lose its groups: the suite
    would pass, but set each expensive module fixture up once per worker, or run the
    multi-process tests side by side, and outgrow its 20 minutes. xdist groups a test by
    appending `@group` to its node id on each worker, which pytest 9.2 ignores (pytest-xdist
    issue 1386); here the same is tried on a test of our own, before anything runs. Once an
    xdist release groups otherwise (its pull request 1388), lift this and setup.py's pin."""
    config = session.config
    parallel = config.getoption("numprocesses", None) and not hasattr(config, "workerinput")
    if not (parallel and config.getoption("dist", None) == "loadgroup"):
        return
    probe = _NodeIdProbe.from_parent(session, name="probe")
    probe._nodeid = f"{probe.nodeid}@group"
    if not probe.nodeid.endswith("@group"):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} with pytest-xdist does not keep xdist_group tests "
            "together (pytest-xdist issue 1386): install the pytest the dev extra pins "
            '(pip install -e ".[dev]"), or run with -n 0.')


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _float32_policy():
    """Tests that switch to mixed precision must not leak the policy into others."""
    import keras
    import tf_keras
    yield
    keras.mixed_precision.set_global_policy("float32")
    tf_keras.mixed_precision.set_global_policy("float32")


def two_device_mirrored_strategy():
    """MirroredStrategy over the two logical CPUs.

    ReductionToOneDevice, not the default collectives: collective instance keys collide between
    several MirroredStrategy objects in one process (shape-mismatch aborts), and these tests
    build many.
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    return tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
