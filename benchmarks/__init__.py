"""`make bench`: the workbench's performance measurements (see `benchmarks/results.md`)."""
