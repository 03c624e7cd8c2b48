"""scripts/soak's pieces: the fault script for the engine (faults), one request and its one outcome
(outcome), the paced load, the engine's log and the summary (run)."""
