"""What each process of the distributed tests runs: ``python -m tests.dist_scenarios SCENARIO OUT N
[faast command line...]``.

The environment is the one ``torchrun`` sets (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so the
code under test joins the group exactly as it would under the launcher. With no such variables
(world size 1) the same functions give the single-process reference the tests compare with.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from faast import FaastClassifier, distributed
from faast.data import ImageDataset
from faast.encoders import ImageEncoder, encode_dataset, to_rgb_batch

# The LM imports (transformers) happen inside the functions that need them: the failure scenarios
# only fit classifiers, and a process that imports less starts faster on a loaded machine.


def classifier_data(n: int, d: int = 7, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d), y (n,)) with labels that depend on X, seeded."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.argmax(X[:, :classes] + 0.3 * rng.normal(size=(n, classes)), axis=1)
    return X, y


def fit_classifiers(d: distributed.Dist, n: int) -> dict[str, torch.Tensor]:
    """coef_ of a fit and of two partial_fit calls on this process's shard of n examples."""
    X, y = classifier_data(n)
    mine = d.shard_range(n)
    clf = FaastClassifier(alpha=1.0, distributed=d.active).fit(
        X[mine.start : mine.stop], y[mine.start : mine.stop]
    )
    out = {"fit": torch.tensor(clf.coef_), "classes": torch.from_numpy(clf.classes_)}
    # The default cut (exact leave-one-out on the kept rows while n <= 2d): the rows travel too.
    auto = FaastClassifier(distributed=d.active).fit(X[mine.start : mine.stop], y[mine.start : mine.stop])
    out["auto"] = torch.tensor(auto.coef_)
    out["auto/ridge"] = torch.tensor(float(auto.ridge_ or 0.0))
    out["auto/rank"] = torch.tensor(int(auto.rank_))
    out["auto/logit_scale"] = torch.tensor(auto.logit_scale_)  # from the gathered rows
    # two features + the intercept: beyond 2·3 examples the rows are not kept, and the temperature
    # of predict_proba sums each shard's held-out cross-entropy
    narrow = FaastClassifier(distributed=d.active).fit(
        X[mine.start : mine.stop, :2], y[mine.start : mine.stop]
    )
    out["narrow/coef"] = torch.tensor(narrow.coef_)
    out["narrow/logit_scale"] = torch.tensor(narrow.logit_scale_)
    # every process records every example learned (beyond the kept rows forget checks it)
    out["narrow/record"] = narrow._record.to_tensor()
    shifted = X[mine.start : mine.stop] + 3.0  # not centred: the intercept has work to do
    icpt = FaastClassifier(fit_intercept=True, distributed=d.active).fit(shifted, y[mine.start : mine.stop])
    out["intercept/coef"] = torch.tensor(icpt.coef_)
    out["intercept/intercept"] = torch.tensor(icpt.intercept_)
    # centred on the mean of every shard's features (read off the summed statistics)
    centred = FaastClassifier(center_features=True, distributed=d.active).fit(
        shifted, y[mine.start : mine.stop]
    )
    out["centred/coef"] = torch.tensor(centred.coef_)
    out["centred/intercept"] = torch.tensor(centred.intercept_)
    # a class_weight dict: every process weighs its shard's examples by their class
    table = {int(c): 2.5 + int(c) for c in np.unique(y)}
    weighted = FaastClassifier(class_weight=table, distributed=d.active).fit(
        X[mine.start : mine.stop], y[mine.start : mine.stop]
    )
    out["class_weight"] = torch.tensor(weighted.coef_)
    if n >= 4:  # partial_fit: the first half of the data, then the second, each call sharded
        inc = FaastClassifier(tau=1e-3, distributed=d.active)
        for part in (slice(0, n // 2), slice(n // 2, n)):
            Xp, yp = X[part], y[part]
            r = d.shard_range(len(Xp))
            inc.partial_fit(Xp[r.start : r.stop], yp[r.start : r.stop], classes=np.unique(y))
        out["partial_fit"] = torch.tensor(inc.coef_)
    return out


def lm_windows(n: int, length: int = 12, seed: int = 3) -> torch.Tensor:
    from tests.lm_tiny import VOCAB

    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (n, length), generator=gen)


def learn_lm(d: distributed.Dist, n: int) -> dict[str, torch.Tensor]:
    """Fast weights (float64) of every memory of a tiny float64 model after learning n windows: the
    first one by every process (a shared starting point), the others sharded."""
    from faast.lm import FaastConfig, get_faast_model
    from faast.lm.text import learn_windows
    from tests.lm_tiny import tiny_model

    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1))
    windows = lm_windows(n)
    fm.learn(input_ids=windows[:1])  # learned by every process before: must be counted once
    with d.reduce_learning(fm):
        learn_windows(fm, d.shard(windows[1:]), batch_size=2, progress=False)  # may be empty
    out = {}
    for name, readout in fm.memories.items():
        out[f"{name}/W"] = readout.memory.weight(torch.float64)
        out[f"{name}/count"] = torch.tensor(readout.stats.count)
        for key, value in readout.extra_state().items():
            out[f"{name}/{key}"] = value
    out["learned_rows"] = fm.learned_rows.to_tensor()  # every process records every row (sorted)
    return out


def learn_task(d: distributed.Dist, n: int) -> dict[str, torch.Tensor]:
    """Output-memory fast weights of a TaskModel after learning n examples (sharded)."""
    from faast.lm.examples import Example
    from faast.lm.prompts import PromptTemplate
    from faast.lm.task import TaskModel, TaskSpec
    from tests.lm_tiny import tiny_model
    from tests.lm_wordlevel import word_tokenizer

    template = PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")
    task = TaskModel.create(tiny_model("llama"), word_tokenizer(), TaskSpec(template, pairs="answer"))
    gen = np.random.default_rng(5)
    examples = [
        Example(" ".join(f"w{k}" for k in gen.integers(3, 80, size=4)), f"w{80 + i % 3}") for i in range(n)
    ]
    pairs = d.learn_shard(task, examples, lambda part: task.learn(part, batch_size=2, progress=False))
    assert pairs == task.model.num_pairs
    assert len(task.learned) == n  # every process records every example learned (forget checks it)
    assert task.model.learned_rows is not None and len(task.model.learned_rows) == n  # and its rows
    task.forget(examples[-1:], progress=False)  # one another process may have learned
    task.learn(examples[-1:], progress=False)
    out = task.model.output_memory
    result = {"W": out.memory.weight(torch.float64), "counts": out.extra_state()["counts"]}
    # the same examples after lead demonstrations (read from their KV cache on every process)
    spec = TaskSpec(template, pairs="answer", demonstrations=[("w3 w4", "w81"), ("w5", "w82")])
    lead = TaskModel.create(tiny_model("llama"), word_tokenizer(), spec)
    pairs = d.learn_shard(lead, examples, lambda part: lead.learn(part, batch_size=2, progress=False))
    assert pairs == lead.model.num_pairs and lead._lead_prefix() is not None
    out = lead.model.output_memory
    result.update({"lead/W": out.memory.weight(torch.float64), "lead/counts": out.extra_state()["counts"]})
    return result


def train_readout_curve(d: distributed.Dist) -> dict[str, torch.Tensor]:
    """Loss curve and trained readout of a tiny float64 model (7 windows, batches of 3: the last
    batch has one window, so some processes have none), without dropout."""
    from faast.lm import FaastConfig, get_faast_model
    from faast.lm.train import TrainConfig, train_readout
    from tests.lm_tiny import tiny_model

    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1, readout_dropout=0.0))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():  # a random start, so that the scorer gets gradients from the first step
        for p in fm.memories.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    config = TrainConfig(steps=2, batch_windows=3, bank_tokens=40, lr=1e-2, log_every=1)
    log = train_readout(fm, lm_windows(7, length=10, seed=8), config, progress=False)
    out = {
        k: torch.tensor([row[k] for row in log], dtype=torch.float64)
        for k in ("loss", "base_loss", "grad_norm")
    }
    out.update({f"param/{name}": p.detach().clone() for name, p in fm.memories.named_parameters()})
    return out


class RowMeans(ImageEncoder):
    """A stub frozen encoder: the mean intensity of the first 8 rows; counts what it encodes."""

    name, feature_dim, resolution = "row-means", 8, 8

    def __init__(self) -> None:
        self.seen = 0

    def identity(self) -> dict[str, str]:
        return {"encoder": self.name, "resolution": "8"}

    def encode(self, images: np.ndarray) -> torch.Tensor:
        self.seen += len(images)
        return to_rgb_batch(images, 8)[:, 0, :, :8].mean(dim=1)


def encode_images(d: distributed.Dist, n: int, cache: Path) -> dict[str, torch.Tensor]:
    """Features of n toy images encoded in parallel, then again from the cache rank 0 wrote."""
    images = np.random.default_rng(2).integers(0, 256, size=(n, 12, 12), dtype=np.uint8)
    data = ImageDataset("toy", "train", images, np.arange(n) % 3, ("a", "b", "c"))
    enc = RowMeans()
    feats = encode_dataset(enc, data, cache, batch_size=2, progress=False, distributed=True)
    encoded = enc.seen
    again = encode_dataset(enc, data, cache, batch_size=2, progress=False, distributed=True)
    assert torch.equal(again, feats) and enc.seen == encoded  # the second pass read the cache
    assert encoded == len(d.shard_range(n))  # each process encoded its own block only
    return {"features": feats}


def learn_all(d: distributed.Dist, n: int, out: Path, *, lm: bool = True) -> dict[str, torch.Tensor]:
    """Every learning path: feature extraction and classifier fit/partial_fit on n examples; with
    ``lm``, also LM learn (one window learned by every process, then one more: a process with
    none), task learn (3 examples) and readout training (DistributedDataParallel)."""
    results = {f"enc/{k}": v for k, v in encode_images(d, n, out / "cache").items()}
    results.update({f"clf/{k}": v for k, v in fit_classifiers(d, n).items()})
    if lm:
        results.update({f"lm/{k}": v for k, v in learn_lm(d, 2).items()})
        results.update({f"task/{k}": v for k, v in learn_task(d, 3).items()})
        results.update({f"train/{k}": v for k, v in train_readout_curve(d).items()})
    return results


def run(scenario: str, out: Path, n: int, cli: list[str]) -> None:
    d = distributed.init()
    if scenario in ("learn", "light"):  # light: no language model (a faster start)
        results = learn_all(d, n, out, lm=scenario == "learn")
        save_file({k: v.contiguous() for k, v in results.items()}, str(out / f"rank{d.rank}.safetensors"))
        if cli:  # then the `faast lm learn` command, unchanged, in the same processes
            from faast.cli import main

            if main(cli) != 0:
                raise SystemExit(1)
    elif scenario == "commands":  # `faast` command lines (a JSON list of argv lists), one after another
        from faast.cli import main

        for argv in json.loads(cli[0]):
            if main(argv) != 0:
                raise SystemExit(1)
    elif scenario == "exit":  # end at once with status 3 after a collective, output flushed
        assert d.sum(1.0) == d.world_size
        print(f"rank {d.rank} done", end="")  # no newline: only the flush writes it to the pipe
        distributed.end_process(3)
        raise AssertionError("end_process returned in a launched process")
    elif scenario == "fail":  # rank 1 fails before the collective; the others must not hang
        if d.rank == 1:
            raise ValueError("rank 1 could not read its data")
        fit_classifiers(d, n)
    elif scenario == "stuck":  # rank 1 never reaches the collective; the others must time out
        if d.rank == 1:
            time.sleep(120)
        fit_classifiers(d, n)
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    distributed.end_process(0)  # as `faast` itself ends under torchrun


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
