"""The model lifecycle: training/ (build time) and serving/ (serve time), meeting in artifact."""
