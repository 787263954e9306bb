"""Two gloo processes, each on half of every domain's batch, take the same SGD step as one process on the global
batch (the merged model; BN normalises with running statistics so that shares see identical normalisation)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from mpnas import distributed
from mpnas.config import SpaceConfig, StageConfig
from mpnas.models.multipath import MultiPathNet
from mpnas.space import SearchSpace

DOMAINS = {"alpha": 3, "beta": 4}


def _model() -> MultiPathNet:
    cfg = SpaceConfig(stem_width=8, stages=[StageConfig(width=8, layers=1), StageConfig(width=16, layers=2, stride=2)],
                      head_widths=[32], kernels=[3, 5], expansions=[1, 3])
    space = SearchSpace.from_config(cfg, 16)
    g = space.reference_genotype()
    torch.manual_seed(0)
    model = MultiPathNet(space, {d: g for d in DOMAINS}, DOMAINS, "per_domain", 0.0, True, cfg)
    model.eval()  # BN uses running stats: identical normalisation on every share of the batch
    return model


def _batch() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return {d: (torch.randn(8, 3, 16, 16, generator=gen), torch.randint(0, k, (8,), generator=gen))
            for d, k in DOMAINS.items()}


def _step(model: MultiPathNet, batch: dict, dist_step: bool) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.0)
    logits = model.forward_routed({d: x for d, (x, _) in batch.items()})
    loss = sum(F.cross_entropy(logits[d], batch[d][1]) for d in batch) / len(batch)
    opt.zero_grad()
    loss.backward()
    if dist_step:
        distributed.all_reduce_gradients(model)
    opt.step()


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    info = distributed.init_from_env(backend="gloo")
    assert info.enabled and info.rank == rank
    model = _model()
    distributed.broadcast_parameters(model)
    local = {d: (distributed.shard(x, info), distributed.shard(y, info)) for d, (x, y) in _batch().items()}
    _step(model, local, dist_step=True)
    distributed.rank0_only(torch.save)(model.state_dict(), out)
    distributed.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_two_process_step_matches_single_process(tmp_path):
    ref = _model()
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    _step(ref, _batch(), dist_step=False)
    out = tmp_path / "ddp.pt"
    # fork: the children inherit this module (a spawned child would have to re-import the test file by name)
    mp.start_processes(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True, start_method="fork")
    ddp = torch.load(out, weights_only=True)
    changed = 0
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-5, atol=1e-6, msg=f"{k} differs")
        changed += int(not torch.equal(before[k], v))
    assert changed > 0  # the step really moved the weights


def test_single_process_defaults(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = distributed.init_from_env()
    assert not info.enabled and distributed.is_main()
    with pytest.raises(ValueError, match="does not split evenly"):
        distributed.shard(torch.zeros(3, 1), distributed.DistInfo(rank=0, world_size=2))
