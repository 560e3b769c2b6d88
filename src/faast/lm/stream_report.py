"""Writing streaming results: per-chunk CSV and a plot of perplexity against position in the text."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from faast.io import atomic_write
from faast.lm.stream import StreamChunk
from faast.publish import save_figure

COLUMNS = ("index", "start", "tokens", "ppl", "base_ppl", "context_ppl", "pairs_learned")


def write_stream_csv(path: str | os.PathLike[str], rows: Sequence[StreamChunk]) -> Path:
    """One line per chunk (``COLUMNS``), written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(r.to_dict() for r in rows)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())

    return atomic_write(path, write)


def plot_stream(
    path: str | os.PathLike[str], runs: Mapping[str, Sequence[StreamChunk]], title: str = ""
) -> Path:
    """Perplexity per chunk vs token position (log y), one panel per text: fast weights of the
    text so far, the base model and, where measured, the sliding in-context window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, (name, rows) in zip(axes[0], runs.items(), strict=True):
        x = [r.start + r.tokens for r in rows]
        ax.plot(x, [r.ppl for r in rows], label="fast weights (text so far)", lw=1.2)
        if all(r.base_ppl is not None for r in rows):
            ax.plot(x, [r.base_ppl for r in rows], label="base model", lw=1, color="grey")
        if all(r.context_ppl is not None for r in rows):
            ax.plot(x, [r.context_ppl for r in rows], label="base + preceding text in context", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("token position in the text")
        ax.set_ylabel("perplexity of the chunk")
        ax.set_title(Path(name).name if os.sep in name else name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


__all__ = ["COLUMNS", "plot_stream", "write_stream_csv"]
