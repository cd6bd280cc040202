"""The model lifecycle: training and compilation (build time), scoring and registry (serve time)."""
