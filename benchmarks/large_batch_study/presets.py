"""The study's presets: which workloads, batches, example budgets and grids."""

import dataclasses
from typing import Dict, Tuple

OPTIMIZERS = ("lamb", "lars", "adamw", "nesterov")


@dataclasses.dataclass(frozen=True)
class WorkloadPlan:
    """How one workload is studied; every optimizer gets exactly this protocol."""
    workload: str                    # fashion_cnn | bert
    batches: Tuple[int, ...]         # global batch sizes, ascending
    examples: int                    # training examples per run: updates = examples // batch
    grid_size: int                   # learning rates per (optimizer, batch) cell before widening
    grid_factor: float               # ratio between neighbouring learning rates
    # The smallest batch's grid centre per optimizer: conventional rates for the model family.
    initial_centres: Dict[str, float]
    warmup_fraction: float = 0.1     # of each run's updates, then linear decay to 0
    max_widenings: int = 4           # per cell and side: how far a grid may move off its centre
    seeds: Tuple[int, ...] = (0, 1)  # first: the grid; the rest: the best rate of each cell
    options: Tuple[Tuple[str, object], ...] = ()  # workload-specific settings (model size...)

    def updates(self, batch):
        return self.examples // batch


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    plans: Tuple[WorkloadPlan, ...]
    # Examples per second to assume for a workload before any of its runs finished (ETA only).
    assumed_examples_per_sec: Dict[str, float] = dataclasses.field(default_factory=dict)


FASHION_CENTRES = {"lamb": 4e-3, "lars": 2.0, "adamw": 2e-3, "nesterov": 0.05}
BERT_CENTRES = {"lamb": 0.015, "lars": 2.0, "adamw": 2e-3, "nesterov": 0.1}

PRESETS = {
    # A smoke of the whole pipeline in a few minutes: both workloads at toy sizes.
    "quick": Preset("quick", (
        WorkloadPlan("fashion_cnn", (64, 256), examples=256 * 20, grid_size=2, grid_factor=4.0,
                     initial_centres=FASHION_CENTRES, max_widenings=1),
        WorkloadPlan("bert", (16, 32), examples=32 * 10, grid_size=2, grid_factor=4.0,
                     initial_centres=BERT_CENTRES, max_widenings=0, seeds=(0,),
                     options=(("size", "tiny"), ("max_seq_length", 128),
                              ("max_eval_steps", 10))),
    ), {"fashion_cnn": 8000.0, "bert": 150.0}),
    # The README's figures on 2 CPU cores: fashion_cnn in full (32x), bert as far as it fits.
    # 229,376 = 112 x 2048 examples (about 4.2 epochs of the 55,000 training images), so the
    # largest batch still gets 112 updates and every batch sees exactly the same examples.
    "cpu": Preset("cpu", (
        WorkloadPlan("fashion_cnn", (64, 128, 256, 512, 1024, 2048), examples=229_376,
                     grid_size=5, grid_factor=2.0, initial_centres=FASHION_CENTRES),
        # BERT-Tiny at sequence 128 runs at ~200 examples/s here: 16x (16..256) with 100
        # updates at the largest batch and a 3-point grid is what a few hours allow.
        WorkloadPlan("bert", (16, 32, 64, 128, 256), examples=25_600, grid_size=3,
                     grid_factor=2.0, initial_centres=BERT_CENTRES,
                     options=(("size", "tiny"), ("max_seq_length", 128))),
    ), {"fashion_cnn": 10000.0, "bert": 180.0}),
    # One accelerator: both workloads at full size, 32x each (not run here: no GPU).
    "gpu": Preset("gpu", (
        WorkloadPlan("fashion_cnn", (64, 128, 256, 512, 1024, 2048), examples=2048 * 400,
                     grid_size=5, grid_factor=2.0, initial_centres=FASHION_CENTRES),
        WorkloadPlan("bert", (64, 128, 256, 512, 1024, 2048), examples=2048 * 500,
                     grid_size=5, grid_factor=2.0, initial_centres=BERT_CENTRES,
                     options=(("size", "mini"), ("max_seq_length", 128))),
    ), {"fashion_cnn": 60000.0, "bert": 2500.0}),
}


# ------------------------------------------------------------------------- steps to target
@dataclasses.dataclass(frozen=True)
class TargetPlan:
    """The steps-to-target protocol of one workload (Shallue et al., JMLR 2019): for every
    optimizer and batch, the fewest updates to first reach `target` on the validation metric,
    each cell searched with the same grid; every optimizer gets exactly this protocol."""
    workload: str
    batches: Tuple[int, ...]         # global batch sizes, ascending (powers of two)
    target: float                    # validation metric to reach (fashion_cnn: accuracy)
    cap_examples: int                # a run stops after this many examples if not at target
    eval_examples: int               # examples between two checks of the validation metric
    grid_size: int
    grid_factor: float
    initial_centres: Dict[str, float]
    warmup_fraction: float = 0.05    # of the cap's updates, linear; the rate is then constant
    min_cap_updates: int = 200       # the largest batches still get this many updates
    max_widenings: int = 3
    seeds: Tuple[int, ...] = (0, 1)  # first: the grid; the rest: the best rate of each cell
    options: Tuple[Tuple[str, object], ...] = ()

    def cap_updates(self, batch):
        every = self.eval_every(batch)
        updates = max(self.min_cap_updates, self.cap_examples // batch)
        return -(-updates // every) * every  # whole evaluation intervals

    def eval_every(self, batch):
        return max(1, self.eval_examples // batch)

    def warmup_updates(self, batch):
        return int(round(self.warmup_fraction * self.cap_updates(batch)))


TARGET_PRESETS = {
    # The steps-to-target plumbing in a few minutes.
    "quick": Preset("quick", (
        TargetPlan("fashion_cnn", (32, 128), target=0.70, cap_examples=128 * 60,
                   eval_examples=1024, grid_size=2, grid_factor=4.0,
                   initial_centres=FASHION_CENTRES, min_cap_updates=20, max_widenings=1),
    ), {"fashion_cnn": 8000.0}),
    # Fashion-MNIST at Shallue et al.'s target, 10% validation error, over 64x of batch (16 to
    # 1,024); a run stops at the target or after 20 epochs (1.1M examples), the validation
    # accuracy checked every 5,500 examples (a tenth of an epoch).
    "cpu": Preset("cpu", (
        TargetPlan("fashion_cnn", (16, 32, 64, 128, 256, 512, 1024), target=0.90,
                   cap_examples=1_100_000, eval_examples=5_500, grid_size=5, grid_factor=2.0,
                   initial_centres=FASHION_CENTRES),
        # BERT-Tiny on the built-in Wikipedia data, 8x of batch (16 to 128), to 10% held-out
        # masked-LM accuracy: past the unigram plateau (4.9%), which LAMB at batch 16 and its
        # usual rate reaches in ~500 updates and then holds near 12% at a constant rate (a pilot
        # run). A run stops at the target or after 49,152 examples (~5 min here); the accuracy
        # is checked every 1,024 examples (an eighth of what batch 16 needs) on the first 512
        # held-out sequences (~9,700 masked tokens: a standard error of 0.3 points at 10%).
        TargetPlan("bert", (16, 32, 64, 128), target=0.10, cap_examples=49_152,
                   eval_examples=1_024, grid_size=3, grid_factor=2.0,
                   initial_centres=BERT_CENTRES, max_widenings=2,
                   options=(("size", "tiny"), ("max_seq_length", 128),
                            ("max_eval_steps", 8))),
    ), {"fashion_cnn": 10000.0, "bert": 180.0}),
}
