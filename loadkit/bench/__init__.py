"""scripts/bench: bring-up (lab), the measurements (phases), one whole run (run), the doc's figures
(report) and its plot (plot, run in the bench venv for matplotlib)."""
