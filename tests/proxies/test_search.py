"""Deterministic per-spec scores across positions and paths; disconnected cells; `top_k`; `initscore search`."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from warm_cli import run_initscore

from initscore import proxies, search
from initscore.errors import OptionsError
from initscore.proxies.batch import DISCONNECTED, nb201_disconnected, spec_seed

A = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
B = "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|nor_conv_3x3~2|"
C = "|skip_connect~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
DISC = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|"
NAMES = ["synflow", "naswot", "meco", "params"]


def spec(cell: str, **extra) -> dict:
    return {"arch": "nb201", "args": {"cell": cell, "C": 2, "N": 1, **extra}}


def batch(n: int = 6):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_nb201_disconnected_hand_cases() -> None:
    assert nb201_disconnected(DISC)  # node 3 reads only none edges
    assert nb201_disconnected("|none~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|")  # node 1 unreachable
    assert not nb201_disconnected(A)
    assert not nb201_disconnected("|skip_connect~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|")


def test_spec_seed_depends_on_the_architecture_and_seed_only() -> None:
    assert spec_seed(spec(A)) == spec_seed(spec(A))
    assert spec_seed({"arch": "nb201", "args": {"cell": A}}) == spec_seed({"arch": "nb201", "args": {"cell": A, "num_classes": 10}})
    assert spec_seed(spec(A)) != spec_seed(spec(B))
    assert spec_seed(spec(A), 0) != spec_seed(spec(A), 1)


def test_same_spec_same_score_whatever_its_position_or_neighbours() -> None:
    x = batch()
    alone = proxies.score_architectures([spec(A)], x, NAMES)[0]
    mixed = proxies.score_architectures([spec(B), spec(C), spec(A)], x, NAMES)[2]
    assert alone.values == mixed.values and alone.seed == mixed.seed
    other_seed = proxies.score_architectures([spec(A)], x, NAMES, seed=1)[0]
    assert other_seed.values["naswot"] != alone.values["naswot"]
    # the search path gives the same numbers
    res = search.top_k([spec(C), spec(A), spec(B)], x, k=3, proxy="naswot")
    by_index = {c.index: c.score for c in res.top}
    assert by_index[1] == alone.values["naswot"]


def test_disconnected_cell_scores_worst_with_a_reason() -> None:
    x = batch()
    rows = proxies.score_architectures([spec(DISC), spec(A)], x, ["synflow"])
    assert rows[0].error == DISCONNECTED and rows[1].ok
    res = search.top_k([spec(DISC), spec(A)], x, k=2, proxy="synflow")
    assert [c.index for c in res.top] == [1, 0]
    assert res.failed == 1 and res.reasons[0]["index"] == 0 and "disconnected" in res.reasons[0]["reason"]
    assert res.to_dict()["top"][1]["score"] is None  # JSON-safe: no -inf


def test_top_k_orders_by_the_proxy_and_keeps_k() -> None:
    x = batch()
    specs = [spec(c) for c in (A, B, C)]
    rows = proxies.score_architectures(specs, x, ["synflow"])
    res = search.top_k(specs, x, k=2, proxy="synflow")
    expected = sorted(range(3), key=lambda i: -rows[i].values["synflow"])[:2]
    assert [c.index for c in res.top] == expected
    assert [c.score for c in res.top] == [rows[i].values["synflow"] for i in expected]
    seen = []
    search.top_k(specs, x, k=1, proxy="params", progress=lambda d, t, best: seen.append((d, t, len(best))))
    assert seen == [(1, 3, 1), (2, 3, 1), (3, 3, 1)]


def test_top_k_az_nas_is_the_rank_aggregate_of_its_inputs() -> None:
    from initscore.proxies.aggregate import AZ_NAS_INPUTS, log_rank_aggregate

    x = batch()
    specs = [spec(c) for c in (A, B, C, DISC)]
    rows = proxies.score_architectures(specs, x, list(AZ_NAS_INPUTS))
    agg = log_rank_aggregate({n: [r.values.get(n) for r in rows] for n in AZ_NAS_INPUTS})
    res = search.top_k(specs, x, k=4, proxy="az_nas")
    assert [c.index for c in res.top] == sorted(range(4), key=lambda i: (-agg[i], i))
    assert res.top[-1].index == 3  # the disconnected cell, worst in every input


def test_fresh_batch_per_architecture_is_seeded_by_the_spec() -> None:
    pool_x, pool_y = batch(40)

    def draw(s: int):
        g = torch.Generator().manual_seed(s)
        idx = torch.randperm(40, generator=g)[:6]
        return pool_x[idx], pool_y[idx]
    one = proxies.score_architectures([spec(A)], draw, ["naswot"])[0]
    two = proxies.score_architectures([spec(B), spec(A)], draw, ["naswot"])[1]
    assert one.values == two.values


def test_top_k_bad_input() -> None:
    x = batch()
    with pytest.raises(OptionsError, match="unknown proxy"):
        search.top_k([spec(A)], x, 1, proxy="synflowz")
    with pytest.raises(OptionsError, match="no architectures"):
        search.top_k([], x, 1)
    with pytest.raises(OptionsError, match="k must be in 1..1"):
        search.top_k([spec(A)], x, 2)


def test_nb201_enumeration_covers_the_space() -> None:
    cells = {search.nb201_cell(i) for i in range(search.NB201_SIZE)}
    assert len(cells) == 15625 and A in cells
    assert search.nb201_sample(5, seed=4) == search.nb201_sample(5, seed=4)
    with pytest.raises(OptionsError):
        search.nb201_cell(15625)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return run_initscore("search", *args, cwd=os.getcwd(), env=env)


def test_search_cli_cells_file_matches_the_library(tmp_path) -> None:
    f = tmp_path / "cells.txt"
    f.write_text("# three tiny cells and a disconnected one\n" + "\n".join(json.dumps(spec(c)) for c in (A, B, DISC, C)) + "\n")
    r = run_cli("--cells", str(f), "--k", "2", "--proxy", "synflow", "--data", "synthetic", "--batch-size", "4", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["total"] == 4 and out["failed"] == 1 and len(out["top"]) == 2
    # synflow reads only the input's shape: the library gives the same numbers from the same specs
    lib = proxies.score_architectures([spec(c) for c in (A, B, C)], (torch.zeros(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)), ["synflow"])
    best = max(lib, key=lambda r: r.values["synflow"])
    assert out["top"][0]["score"] == best.values["synflow"]


def test_search_cli_bad_input_is_one_line(tmp_path) -> None:
    r = run_cli("--space", "nb201", "--n", "3", "--k", "5", "--data", "synthetic")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--k: must be in 1..3" in r.stderr
    r = run_cli("--space", "darts", "--n", "3", "--data", "synthetic")
    assert r.returncode == 2 and "unknown search space" in r.stderr
    r = run_cli("--space", "nb201", "--proxy", "nope", "--data", "synthetic")
    assert r.returncode == 2 and "unknown proxy" in r.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    r = run_cli("--cells", str(empty), "--data", "synthetic")
    assert r.returncode == 2 and "lists no architecture" in r.stderr
    r = run_cli("--cells", str(tmp_path / "missing.txt"), "--data", "synthetic")
    assert r.returncode == 2 and "no such file" in r.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text(A + "\n|nor_conv_3x3~0|\n")
    r = run_cli("--cells", str(bad), "--data", "synthetic")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "line 2" in r.stderr
    r = run_cli("--space", "nb201", "--n", "2", "--data", "cifar10", "--root", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    r = run_cli("--space", "nb201", "--n", "3", "--k", "1", "--data", "synthetic", "--batch-size", "1")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [  # the contract's rule, named by its flag
        "error: --batch-size: the proxies compare samples (ZiCo splits the batch in two, naswot and jacob_cov "
        "compare pairs); use batch_size >= 2"], r.stderr


def _interrupted(specs, x, k, proxy, checkpoint, after: int) -> None:
    class Stop(Exception):
        pass

    def stop(done, total, best):
        if done == after:
            raise Stop

    with pytest.raises(Stop):
        search.top_k(specs, x, k, proxy, progress=stop, checkpoint=checkpoint)


@pytest.mark.parametrize("proxy", ["naswot", "az_nas"])
def test_checkpoint_resumes_without_rescoring(tmp_path, proxy) -> None:
    x = batch()
    specs = search.nb201_sample(search.CHECKPOINT_EVERY_CELLS + 5, seed=3, C=2, N=1)
    full = search.top_k(specs, x, 3, proxy)
    ckpt = search.FileCheckpoint(tmp_path / "scan.ckpt")
    _interrupted(specs, x, 3, proxy, ckpt, after=search.CHECKPOINT_EVERY_CELLS + 2)
    saved = json.loads((tmp_path / "scan.ckpt").read_text())
    assert saved["done"] == search.CHECKPOINT_EVERY_CELLS
    seen = []
    res = search.top_k(specs, x, 3, proxy, checkpoint=ckpt, progress=lambda d, t, b: seen.append(d))
    assert res.resumed == search.CHECKPOINT_EVERY_CELLS and res.scored == len(specs) - res.resumed
    assert seen[0] == res.resumed and seen[-1] == len(specs)  # progress starts where the checkpoint left off
    assert [(c.index, c.score, c.values) for c in res.top] == [(c.index, c.score, c.values) for c in full.top]
    assert (res.failed, res.reasons) == (full.failed, full.reasons)
    # another search (other k, proxy or seed) does not take this checkpoint
    other = search.top_k(specs[:3], x, 2, proxy, checkpoint=ckpt)
    assert other.resumed == 0 and other.scored == 3


@pytest.mark.parametrize("content", ['{"version": 1, "done": 4', "not json", '{"version": 1, "key": 3}', "[1, 2]"])
def test_corrupt_checkpoint_file_starts_over_with_a_warning(tmp_path, caplog, content) -> None:
    x = batch()
    path = tmp_path / "scan.ckpt"
    path.write_text(content)
    with caplog.at_level("WARNING", logger="initscore.search"):
        res = search.top_k([spec(A), spec(B)], x, 1, "naswot", checkpoint=search.FileCheckpoint(path))
    assert res.resumed == 0 and res.scored == 2
    assert any("starting over" in r.getMessage() for r in caplog.records)


def test_search_cli_resume_continues_the_request_it_prints(tmp_path) -> None:
    from initscore.jobs import run_job

    f = tmp_path / "cells.txt"
    cells = search.nb201_sample(search.CHECKPOINT_EVERY_CELLS + 3, seed=5, C=2, N=1)
    f.write_text("\n".join(json.dumps(s) for s in cells) + "\n")
    flags = ("--cells", str(f), "--k", "2", "--proxy", "naswot", "--data", "synthetic", "--batch-size", "4")
    r = run_cli(*flags, "--print-request")
    assert r.returncode == 0, r.stderr
    request = json.loads(r.stdout)
    assert request["kind"] == "search" and len(request["models"]) == len(cells)
    ckpt = tmp_path / "scan.ckpt"

    class Stop(Exception):
        pass

    def stop(done, total, metrics):
        if done == search.CHECKPOINT_EVERY_CELLS + 1:
            raise Stop

    with pytest.raises(Stop):  # the same request, interrupted after its first checkpoint
        run_job(request, progress=stop, checkpoint=search.FileCheckpoint(ckpt))
    r = run_cli(*flags, "--resume", str(ckpt), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["resumed"] == search.CHECKPOINT_EVERY_CELLS and out["scored"] == 3
    whole, _, _ = run_job(request)
    assert [c["index"] for c in out["top"]] == [c.index for c in whole.top]
    assert [c["score"] for c in out["top"]] == pytest.approx([c.score for c in whole.top], rel=1e-5)
    again = json.loads(run_cli(*flags, "--resume", str(ckpt), "--json").stdout)  # finished: nothing is scored
    assert again["resumed"] == len(cells) and again["scored"] == 0 and again["top"] == out["top"]


def test_search_cli_bad_input_does_not_import_torch(tmp_path) -> None:
    code = ("import sys\nfrom initscore.cli import main\nsys.argv = ['initscore', 'search'] + sys.argv[1:]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print('torch' in sys.modules, e.code)\n")
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {})}
    for args in (["--space", "nb201", "--n", "3", "--k", "5", "--data", "synthetic"],
                 ["--space", "nb201", "--proxy", "nope", "--data", "synthetic"],
                 ["--space", "nb201", "--n", "2", "--data", "cifar10", "--root", str(tmp_path / "nowhere")]):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
        assert r.stdout.split() == ["False", "2"], (args, r.stdout, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
