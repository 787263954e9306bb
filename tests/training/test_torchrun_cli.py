"""The README's data-parallel command, `torchrun --nproc_per_node=2 mpnas train ...`, run for real: every rank shares
rank 0's --out (rank 0 holds the output lock and writes), and the model it writes loads."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mpnas.space import SearchSpace, genotypes_to_json
from mpnas.utils.io import output_lock

BIN = Path(sys.executable).parent


@pytest.mark.timeout(300)
def test_torchrun_two_ranks_train_one_model(tiny_cfg, tiny_data, tmp_path):
    cfg = tiny_cfg.model_copy(update={"train": tiny_cfg.train.model_copy(update={"steps": 4, "eval_every": 4})})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    ref = SearchSpace.from_config(cfg.space, cfg.data.crop).reference_genotype()
    (tmp_path / "g.json").write_text(genotypes_to_json({"alpha": ref, "beta": ref}))
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", str(BIN / "mpnas"), "train", "-c",
           str(tmp_path / "cfg.yaml"), "--data", str(tiny_data), "--genotypes", str(tmp_path / "g.json"),
           "--out", str(out), "--quiet"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    arch = json.loads((out / "architecture.json").read_text())
    assert arch["train"]["steps_done"] == 4
    with output_lock(out):  # the lock was released when the ranks exited
        pass
