"""The merged multi-path network: one module per distinct node, shared by every domain whose path passes it.

A node is (layer, choice, in_ch, out_ch); widths are fixed per layer, so `(layer index, block string)` identifies it
and its id reads `L03/ir_k5_e6_se`. Domains that picked the same node at a layer hold the very same module (same
tensors); `zero` layers are identities; nodes no domain uses are never built. The head convs are shared, each domain
has its own classifier (dropout + linear). Batch-norm in shared nodes keeps per-domain running statistics
(docs/method.md section 7.2; `bn_mode="shared"` is the ablation); `bn_mode="per_domain_affine"` also gives each
domain its own BN scale and shift, so with one shared path it is the shared-backbone, per-domain-BN baseline
(`shared_domain_bn` in the comparison).

`share_nodes=False` gives every domain its own copy of every node and of the head: the *bundle* of independent
single-domain models (the domain-independent NAS baseline) as one object, so its parameters and FLOPs are exactly the
sums over the bundle while training, saving and evaluation use the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import safetensors.torch
import torch
from torch import nn

from mpnas.config import SpaceConfig
from mpnas.models import blocks
from mpnas.models.blocks import BnMode, DomainBatchNorm2d, Head, build_block
from mpnas.space import Choice, Genotype, SearchSpace, genotypes_from_strings
from mpnas.utils.io import atomic_write_bytes, atomic_write_json, read_json

SHARED_HEAD = "shared"


def node_id(layer_index: int, block: str) -> str:
    return f"L{layer_index:02d}/{block}"


class DomainPath(nn.Module):
    """One domain's path as a plain module: forward(x) -> logits, the domain index fixed (no control flow on it).

    Holds references to the merged model's modules, so it shares their parameters; used for export and FLOPs."""

    def __init__(self, nodes: list[nn.Module], head: nn.Module, classifier: nn.Module, domain_index: int):
        super().__init__()
        self.nodes = nn.ModuleList(nodes)
        self.head = head
        self.classifier = classifier
        self.domain_index = domain_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for node in self.nodes:
            x = node(x, self.domain_index)
        return self.classifier(self.head(x, self.domain_index))


class MultiPathNet(nn.Module):
    """Merged per-domain paths; `forward(x, domain)` for one domain, `forward_routed` for a batch of several."""

    def __init__(self, space: SearchSpace, genotypes: dict[str, Genotype], num_classes: dict[str, int],
                 bn_mode: BnMode = "per_domain", dropout: float = 0.0, share_nodes: bool = True,
                 space_config: Optional[SpaceConfig] = None):
        super().__init__()
        if not genotypes:
            raise ValueError("MultiPathNet needs at least one domain genotype")
        self.space, self.bn_mode, self.dropout, self.share_nodes = space, bn_mode, dropout, share_nodes
        self.space_config = space_config
        self.meta: dict = {}  # architecture.json of a loaded model
        self.domains = list(genotypes)
        for d in self.domains:
            if not d or "." in d:
                raise ValueError(f"domain name {d!r}: must be non-empty and contain no '.' (it keys modules)")
            if d not in num_classes:
                raise ValueError(f"domain {d!r} has a genotype but no class count")
            try:
                genotypes[d].validate(space)
            except ValueError as exc:
                raise ValueError(f"genotype of domain {d!r}: {exc}") from None
        self.genotypes = dict(genotypes)
        self.num_classes = {d: int(num_classes[d]) for d in self.domains}
        self.index = {d: i for i, d in enumerate(self.domains)}
        n = len(self.domains)

        self.nodes = nn.ModuleDict()
        self.node_specs: dict[str, tuple[int, Choice]] = {}  # node id -> (layer index, choice)
        self.paths: dict[str, list[Optional[str]]] = {}
        for d in self.domains:
            keys: list[Optional[str]] = []
            for layer, choice in zip(space.layers, genotypes[d].choices):
                if choice.is_zero:
                    keys.append(None)
                    continue
                key = node_id(layer.index, str(choice)) + ("" if share_nodes else f"@{d}")
                if key not in self.nodes:
                    self.nodes[key] = build_block(layer, choice, n, bn_mode)
                    self.node_specs[key] = (layer.index, choice)
                keys.append(key)
            self.paths[d] = keys
        self.heads = nn.ModuleDict({k: Head(space, n, bn_mode) for k in self._head_keys()})
        self.classifiers = nn.ModuleDict({
            d: nn.Sequential(nn.Dropout(dropout), nn.Linear(space.head_widths[-1], self.num_classes[d]))
            for d in self.domains})

    # ---------------------------------------------------------------------------------------------- structure
    def _head_keys(self) -> list[str]:
        return [SHARED_HEAD] if self.share_nodes else list(self.domains)

    def head_key(self, domain: str) -> str:
        return SHARED_HEAD if self.share_nodes else domain

    def _name(self, domain: str | int) -> str:
        if isinstance(domain, int):
            if not 0 <= domain < len(self.domains):
                raise ValueError(f"domain index {domain} out of range 0..{len(self.domains) - 1}")
            return self.domains[domain]
        if domain not in self.index:
            raise ValueError(f"unknown domain {domain!r}; the model has {', '.join(self.domains)}")
        return domain

    def node_users(self) -> dict[str, list[str]]:
        """Node id -> domains whose path passes it, in model domain order."""
        users: dict[str, list[str]] = {k: [] for k in self.nodes}
        for d, keys in self.paths.items():
            for k in keys:
                if k is not None:
                    users[k].append(d)
        return users

    # ---------------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, domain: str | int) -> torch.Tensor:
        d = self._name(domain)
        i = self.index[d]
        x = x.contiguous(memory_format=blocks.MEMORY_FORMAT)
        for key in self.paths[d]:
            if key is not None:
                x = self.nodes[key](x, i)
        return self.classifiers[d](self.heads[self.head_key(d)](x, i))

    def _run_grouped(self, module: nn.Module, xs: dict[str, torch.Tensor], group: list[str]) -> None:
        """Run `module` once on the concatenated inputs of `group`; BN statistics stay per domain segment."""
        if len(group) == 1:
            d = group[0]
            xs[d] = module(xs[d], self.index[d])
            return
        sizes = [xs[d].shape[0] for d in group]
        segments = tuple((self.index[d], n) for d, n in zip(group, sizes))
        out = module(torch.cat([xs[d] for d in group]), segments)
        for d, part in zip(group, out.split(sizes)):
            xs[d] = part

    def forward_routed(self, batches: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits for a mixed-domain batch dict; each node (and the head) runs once for all domains that use it.

        Equal to calling `forward(batches[d], d)` per domain (same BN statistics per domain, in train and eval)."""
        names = [self._name(d) for d in batches]
        xs = {d: batches[d].contiguous(memory_format=blocks.MEMORY_FORMAT) for d in names}
        for li in range(len(self.space.layers)):
            groups: dict[str, list[str]] = {}
            for d in names:
                key = self.paths[d][li]
                if key is not None:
                    groups.setdefault(key, []).append(d)
            for key, group in groups.items():
                self._run_grouped(self.nodes[key], xs, group)
        head_groups: dict[str, list[str]] = {}
        for d in names:
            head_groups.setdefault(self.head_key(d), []).append(d)
        for key, group in head_groups.items():
            self._run_grouped(self.heads[key], xs, group)
        return {d: self.classifiers[d](xs[d]) for d in names}

    def domain_module(self, domain: str | int) -> DomainPath:
        """This domain's path as a module with forward(x) (shares parameters with the merged model)."""
        d = self._name(domain)
        nodes = [self.nodes[k] for k in self.paths[d] if k is not None]
        path = DomainPath(nodes, self.heads[self.head_key(d)], self.classifiers[d], self.index[d])
        return path.train(self.training)

    # ---------------------------------------------------------------------------------------------- accounting
    def num_parameters(self) -> int:
        """Unique parameters: shared nodes counted once (module identity), running statistics excluded."""
        return sum(p.numel() for p in self.parameters())

    def path_parameters(self, domain: str | int) -> int:
        """Parameters on one domain's path: its nodes + head + its classifier (its own BN rows only)."""
        path = self.domain_module(domain)
        other_rows = sum(2 * bn.weight.shape[-1] * (bn.weight.shape[0] - 1) for bn in path.modules()
                         if isinstance(bn, DomainBatchNorm2d) and bn.per_domain_affine)
        return sum(p.numel() for p in path.parameters()) - other_rows

    def analytic_parameters(self) -> int:
        """The same count from the space's analytic costs (a cross-check of the module construction); under
        per_domain_affine each BN adds 2 x channels per further domain (BN widths read from the modules)."""
        total = sum(self.space.layers[li].cost(c)[1] for li, c in self.node_specs.values())
        total += len(self.heads) * self.space.head_cost()[1]
        prev = self.space.head_widths[-1]
        total += sum(prev * k + k for k in self.num_classes.values())
        if self.bn_mode == "per_domain_affine":
            total += sum(2 * bn.weight.shape[-1] * (len(self.domains) - 1) for bn in self.modules()
                         if isinstance(bn, DomainBatchNorm2d))
        return total

    def exclusive_parameters(self) -> dict[str, list[tuple[nn.Parameter, Optional[int]]]]:
        """Domain -> the parameters (or rows of them) that only this domain's forward pass touches.

        `(p, None)` is a whole tensor (a classifier, a node or head on one domain's path only); `(p, row)` is one
        domain's row of a per-domain-affine BN inside a shared node. The trainer uses it to apply loss weights to
        shared parameters only (mpnas/weighting.py, docs/weighting.md)."""
        out: dict[str, list[tuple[nn.Parameter, Optional[int]]]] = {d: [] for d in self.domains}
        users = self.node_users()
        head_users: dict[str, list[str]] = {}
        for d in self.domains:
            head_users.setdefault(self.head_key(d), []).append(d)
        modules = [(self.nodes[k], u) for k, u in users.items()] + [(self.heads[k], u) for k, u in head_users.items()]
        for module, who in modules:
            if len(who) == 1:
                out[who[0]] += [(p, None) for p in module.parameters()]
                continue
            for bn in module.modules():
                if isinstance(bn, DomainBatchNorm2d) and bn.per_domain_affine:
                    for d in who:
                        out[d] += [(bn.weight, self.index[d]), (bn.bias, self.index[d])]
        for d in self.domains:
            out[d] += [(p, None) for p in self.classifiers[d].parameters()]
        return out


# -------------------------------------------------------------------------------------------------- model directory
MODEL_FORMAT = "mpnas.model/1"
WEIGHTS_FILE = "model.safetensors"
ARCH_FILE = "architecture.json"


def architecture_dict(model: MultiPathNet, extra_meta: Optional[dict] = None) -> dict:
    """architecture.json content: everything needed to rebuild the module graph (weights come separately)."""
    if model.space_config is None:
        raise ValueError("save_model: the model has no space_config; build it with MultiPathNet(..., space_config=...)")
    extra = dict(extra_meta or {})
    extra_domains = extra.pop("domains", {})
    domains = {d: {"num_classes": model.num_classes[d], **extra_domains.get(d, {})} for d in model.domains}
    return {"format": MODEL_FORMAT, "space": model.space_config.model_dump(mode="json"),
            "input_size": model.space.input_size,
            "genotypes": {d: model.genotypes[d].to_strings() for d in model.domains},
            "domains": domains, "bn_mode": model.bn_mode, "dropout": model.dropout,
            "share_nodes": model.share_nodes, "data": extra.pop("data", {}), **extra}


def save_model(model: MultiPathNet, model_dir: str | Path, extra_meta: Optional[dict] = None) -> Path:
    """Write model.safetensors (each tensor once: shared nodes are one module) and architecture.json, each atomically.

    `extra_meta` may carry "domains" ({name: {classes, mean, std}}), "data" and any further top-level keys."""
    model_dir = Path(model_dir)
    arch = architecture_dict(model, extra_meta)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(model_dir / WEIGHTS_FILE, safetensors.torch.save(state, metadata={"format": MODEL_FORMAT}))
    atomic_write_json(model_dir / ARCH_FILE, arch)
    return model_dir


def read_architecture(model_dir: str | Path) -> dict:
    path = Path(model_dir) / ARCH_FILE
    arch = read_json(path, f"is {model_dir} a model directory from `mpnas train`?")
    if arch.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: format {arch.get('format')!r}, expected {MODEL_FORMAT!r}")
    return arch


def model_from_architecture(arch: dict, source: str = ARCH_FILE) -> MultiPathNet:
    """Build the (untrained) module graph an architecture.json describes."""
    try:
        space_cfg = SpaceConfig.model_validate(arch["space"])
        space = SearchSpace.from_config(space_cfg, int(arch["input_size"]))
        genotypes = genotypes_from_strings(arch["genotypes"])
        num_classes = {d: int(info["num_classes"]) for d, info in arch["domains"].items()}
        return MultiPathNet(space, genotypes, num_classes, arch["bn_mode"], float(arch["dropout"]),
                            bool(arch.get("share_nodes", True)), space_cfg)
    except KeyError as exc:
        raise ValueError(f"{source}: missing field {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> MultiPathNet:
    """Rebuild a saved MultiPathNet in eval mode; `model.meta` holds its architecture.json."""
    model_dir = Path(model_dir)
    arch = read_architecture(model_dir)
    model = model_from_architecture(arch, str(model_dir / ARCH_FILE))
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing model weights")
    try:
        state = safetensors.torch.load_file(str(weights), device=str(device))
    except Exception as exc:  # noqa: BLE001 - SafetensorError and OSError alike: the file is not usable weights
        raise ValueError(f"{weights}: not a readable safetensors file ({str(exc).strip()[:200]}); re-run "
                         f"`mpnas train` to write the model again") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{weights}: weights do not match {ARCH_FILE}: {exc}") from None
    model.meta = arch
    return model.to(device).eval()
