"""The latency distribution per path, as the doc shows it: `python plot.py results.json out.png` (matplotlib)."""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {
    "direct": "#444444",
    "nginx": "#2a9d8f",
    "modelyard": "#e76f51",
    "keepalive": "#f4a261",
    "adapter": "#9c6644",
    "before": "#bbbbbb",
    "litellm": "#264653",
}


def main(results: str, out: str) -> None:
    with open(results) as fh:
        r = json.load(fh)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    pcts = r["one_in_flight"]["percentiles"]
    for ax, (title, paths) in zip(
        axes,
        [
            ("one request in flight (wrk -c1)", r["one_in_flight"]["paths"]),
            (f"open loop, {r['fixed_rate']['rate']:.0f} requests/s", r["fixed_rate"]["paths"]),
        ],
        strict=True,
    ):
        for key, v in paths.items():
            ms = [q / 1000 for q in v["quantiles"]]
            ax.plot(ms, pcts, marker=".", label=key, color=COLORS.get(key), linewidth=1.6)
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log scale)")
        ax.set_ylabel("percentile")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_ylim(0, 100)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Non-streaming latency per path (POST, Responses bridged to chat), {r['started']}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
