"""The large-batch study: metric against global batch at a fixed budget of training examples.

    python -m benchmarks.large_batch_study --preset=cpu      # the README's figures
    python -m benchmarks.large_batch_study --preset=gpu --dry_run

Protocol (shared/design.md section 8; Nado et al., NeurIPS 2021, is the fairness bar): every
optimizer gets the same number of learning rates per (optimizer, batch) cell; the smallest
batch's grid is centred on a conventional rate for the optimizer, every larger batch's on the
square-root scaling of the smallest batch's best (the LAMB paper's rule); a grid whose best lands
on an edge is widened one point at a time on that side. The best rate of each cell is chosen on
a selection metric and run again with a second seed. Results are appended to `results.csv` run
by run, so a killed study resumes where it was.
"""
