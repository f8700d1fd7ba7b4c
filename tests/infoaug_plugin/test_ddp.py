"""Two-process CPU DDP (gloo): every rank runs the MI branch on its own shard of the twin pairs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from method_helpers import ONE_THREAD_ENV

pytestmark = pytest.mark.slow

STEPS = 4  # one pass over the 32-pair store: 2 ranks x 4 steps x 4 pairs


@pytest.mark.parametrize(("base", "path"), [("simclr", "dict"), ("byol", "provider")])
def test_ddp_ranks_train_on_disjoint_twin_pairs(
    base: str, path: str, twin_store: Path, tmp_path: Path
) -> None:
    script = Path(__file__).with_name("ddp_train.py")
    result = subprocess.run(
        [sys.executable, str(script), base, path, str(twin_store), str(tmp_path), str(STEPS)],
        cwd=tmp_path,
        env=ONE_THREAD_ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]

    assert [r["world_size"] for r in ranks] == [2, 2]
    seen = [[pair for batch in r["pair_ids"] for pair in batch] for r in ranks]
    assert [len(pairs) for pairs in seen] == [STEPS * 4, STEPS * 4]
    assert len(set(seen[0]) | set(seen[1])) == 2 * STEPS * 4  # unique within and across ranks
    assert all(0 <= pair < 32 for pairs in seen for pair in pairs)
    assert all(math.isfinite(r["mi_loss"]) for r in ranks)
    assert (
        ranks[0]["mi_params"] == ranks[1]["mi_params"]
    )  # MI gradients were all-reduced every step
