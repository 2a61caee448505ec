r"""The LAMB paper's Table 1 in miniature: downstream accuracy against pretraining batch.

    python -m benchmarks.batch_scaling_study --plan      # the runs, their order and hours
    python -m benchmarks.batch_scaling_study             # run (or resume) the study
    python -m benchmarks.batch_scaling_study --report    # table and plot from the CSVs

BERT-Tiny on the built-in Wikipedia corpus (README command 1's model, data and seed), the same
153,600 training examples (command 1's) at every global batch from 32 to 512 (batches past the
per-replica micro-batch through `--num_accumulation_steps`), LAMB against AdamW
(shared/design.md section 10; issue 38). Every (batch, optimizer) cell gets the same search,
and each of its settings is judged downstream: the encoder is fine-tuned once (the selection
seed, 1) on each task of --selection_tasks (default: BBC News and the health tweets), and the
setting with the best mean dev accuracy is the cell's; its encoder (and the untuned rule's) is
then fine-tuned with the reporting seeds (2-4), which chose nothing, on every task, and test
accuracy is what the table reports. Test accuracy never chooses anything. Keep
--selection_tasks fixed through a study (name it explicitly before adding a task to --tasks):
a task added later is then only fine-tuned from the kept encoders, no pretraining is redone.

The search of a cell (`protocol.Study.run_cell`):
1. the rate: 3 points a factor 2 apart around the square-root rule from the healthy batch-64
   rate (LAMB 0.005, command 1's recipe; AdamW 1e-3, benchmarks.pretraining_study), at the
   paper's warmup; one more point past an edge while the best sits on it (at most 2 per side);
2. the warmup: the best rate again with a longer warmup than the paper's, 10% of its updates
   or twice the paper's where that is more (batch 32: 480 updates, 64: 240, 128 to 512: 120);
3. at the two largest batches, what Nado et al. (2021) tuned for Adam beyond the rate, for both
   optimizers (so neither gets more tuning): beta_2 0.98 (against 0.999), then the decay's
   power 2 (against 1), each at the best setting so far, then beta_2 0.98 at twice the best
   rate (a lower beta_2 mostly pays by standing a higher rate).

The paper's rules per batch (You et al., ICLR 2020, appendix, "untuned LAMB" for BERT: the
same epochs at every batch, the rate 5/(2^x * 10^3) growing by sqrt(2) per doubling of the
batch up to 5e-3 at 32K, and a warmup ratio of 1/320 of the updates at 512 doubling with the
batch up to 1/5 at 32K, so the same number of warmup updates at every batch): here the rate is
the square-root rule from the batch-64 rate and the warmup is a constant number of updates,
1/5 of the largest batch's (60 of its 300). That setting is the centre of step 1's grid, so the
untuned rule costs no pretraining of its own; it gets a row (and its seeds) beside the tuned
one, for AdamW too.

Resuming: pretraining.csv and finetuning.csv get one row per finished run; the search is
replayed from them, so a killed study redoes nothing finished, and a pretraining in progress
resumes from its model_dir's checkpoint. Cells run the ends of the batch range first.
"""
