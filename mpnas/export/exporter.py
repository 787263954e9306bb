"""`export_model`: a trained model directory -> a mobile export directory (.pte, ONNX, int8, manifest, report).

Layout of the export directory (written in a temp dir, renamed into place when complete):

    manifest.json               domains, classes, preprocessing, entry points, genotypes, source hash, file hashes
    model.pte                   ExecuTorch/XNNPACK, one method `forward_<entry>` per domain over shared weights
    model.int8.pte              the same, PT2E int8 (cfg.int8)
    onnx/<entry>.onnx           one graph per domain (input "input" NCHW float32, output "logits"), dynamic batch
    onnx/<entry>.int8.onnx      onnxruntime static QDQ int8 (cfg.int8)
    export_report.json / .md    parity, int8 accuracy, sizes, sharing, batch-1 latency per domain and runtime

fp32 and int8 are lowered once each. What the combined .pte saves by storing shared weights once is read from its
per-method constant tables (`sharing.py`); with `export.measure_sharing` one single-method .pte per domain is also
lowered in memory to measure the saving against real files (slow; benchmarks do it). The report says which.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from mpnas import __version__
from mpnas.config import ExportConfig
from mpnas.data.loading import Normalizer, center_crop, iterate_split
from mpnas.data.prepared import PreparedDataset
from mpnas.export import measure
from mpnas.export.manifest import FORMAT, MANIFEST_FILE, file_entries, sha256_file
from mpnas.export.programs import domain_program, entry_names
from mpnas.export.report import render_markdown
from mpnas.export.runtimes import OnnxRunner, PteRunner
from mpnas.export.sharing import shared_weight_bytes, sharing_report, table_sharing
from mpnas.models.multipath import WEIGHTS_FILE, MultiPathNet, load_model
from mpnas.utils.io import atomic_dir, atomic_write_json, atomic_write_text

PTE_FILE = "model.pte"
PTE_INT8_FILE = "model.int8.pte"
ONNX_DIR = "onnx"
REPORT_JSON = "export_report.json"
REPORT_MD = "export_report.md"
RANDOM_PARITY_IMAGES = 32


def export_model(model_dir: str | Path, out_dir: str | Path, cfg: ExportConfig, data_dir: Optional[str | Path] = None,
                 progress: bool = True, overwrite: bool = False) -> dict:
    """Export every domain of a saved MultiPathNet; return the report (also written as export_report.json/.md).

    `data_dir` (a prepared dataset; default: the model's own `data.prepared_dir` if it exists) supplies the parity
    images (test split, or val where test has no labels) and the int8 calibration images (train split). Without data,
    parity runs on seeded random inputs and int8 is not produced (both stated in the report)."""
    model_dir = Path(model_dir)
    model = load_model(model_dir)
    ds = _open_data(data_dir, model.meta)
    log = _logger(progress)
    source = {"dir": str(model_dir), "sha256": sha256_file(model_dir / WEIGHTS_FILE)}
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        report = export_loaded(model, source, tmp, cfg, ds, log)
    log(f"wrote {out_dir} (parity {'ok' if report['parity_ok'] else 'FAILED'})")
    return report


# ------------------------------------------------------------------------------------------------------- internals
def _logger(progress: bool) -> Callable[[str], None]:
    def log(msg: str) -> None:
        if progress:
            print(f"[export] {msg}", file=sys.stderr, flush=True)
    return log


def _open_data(data_dir: Optional[str | Path], arch: dict) -> Optional[PreparedDataset]:
    if data_dir is not None:
        return PreparedDataset(data_dir)
    own = arch.get("data", {}).get("prepared_dir")
    if own and (Path(own) / "meta.json").is_file():
        return PreparedDataset(own)
    return None


def _domain_meta(model: MultiPathNet, ds: Optional[PreparedDataset]) -> dict[str, dict]:
    """Classes and mean/std per domain from architecture.json, falling back to the prepared dataset."""
    out = {}
    for d in model.domains:
        info = dict(model.meta.get("domains", {}).get(d, {}))
        if ds is not None and d in ds.domains_info:
            di = ds.info(d)
            info.setdefault("classes", list(di.classes))
            info.setdefault("mean", list(di.mean))
            info.setdefault("std", list(di.std))
        missing = [k for k in ("classes", "mean", "std") if k not in info]
        if missing:
            raise ValueError(f"architecture.json: domains.{d} lacks {', '.join(missing)} and no prepared dataset "
                             f"with domain {d!r} was given (--data)")
        if len(info["classes"]) != model.num_classes[d]:
            raise ValueError(f"domain {d!r}: {len(info['classes'])} class names but the model has "
                             f"{model.num_classes[d]} outputs")
        out[d] = {"classes": list(info["classes"]), "mean": [float(v) for v in info["mean"]],
                  "std": [float(v) for v in info["std"]]}
    return out


def _eval_set(ds: Optional[PreparedDataset], domain: str, crop: int, seed: int
              ) -> tuple[str, np.ndarray, Optional[np.ndarray]]:
    """(split name, normalised NCHW float32 images, labels or None) for parity and accuracy."""
    if ds is None:
        gen = torch.Generator().manual_seed(seed)
        return "random", torch.randn(RANDOM_PARITY_IMAGES, 3, crop, crop, generator=gen).numpy(), None
    split = "test" if ds.has_labels(domain, "test") else "val"
    if not ds.has_labels(domain, split):
        raise ValueError(f"{ds.root}: domain {domain!r} has no labelled test or val images for parity")
    xs, ys = zip(*iterate_split(ds, domain, split, 256, crop))
    return split, torch.cat(xs).numpy(), torch.cat(ys).numpy()


def _calibration(ds: PreparedDataset, domain: str, crop: int, count: int) -> np.ndarray:
    """`count` train images spread evenly over the split (splits are often stored class by class)."""
    images = ds.images(domain, "train")
    if len(images) == 0:
        raise ValueError(f"{ds.root}: domain {domain!r} has no train images for int8 calibration")
    idx = np.unique(np.linspace(0, len(images) - 1, min(count, len(images))).astype(int))
    info = ds.info(domain)
    x = Normalizer(info.mean, info.std, torch.device("cpu"))(torch.from_numpy(np.asarray(images[idx])))
    return center_crop(x, crop).contiguous().numpy()


def _eager(model: MultiPathNet, domain: str) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x), domain).numpy()
    return run


def _batched(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)])


@dataclass
class _Plan:
    """What one export produces, decided once from the model, the config and whether data was given."""

    entries: dict[str, str]  # domain -> entry name (file-safe)
    methods: dict[str, str]  # domain -> .pte method name
    crop: int
    want_pte: bool
    want_onnx: bool
    int8: bool  # cfg.int8 and calibration data exists


@dataclass
class _Traced:
    """Per-domain programs and evaluation sets, traced once and shared by every runtime."""

    fp_programs: dict[str, object] = field(default_factory=dict)  # .pte method -> exported program
    q_programs: dict[str, object] = field(default_factory=dict)
    onnx_fp: dict[str, Path] = field(default_factory=dict)  # domain -> ONNX graph
    onnx_q: dict[str, Path] = field(default_factory=dict)
    evalsets: dict[str, tuple[str, np.ndarray, Optional[np.ndarray]]] = field(default_factory=dict)


Runners = dict[str, Callable[[str, np.ndarray], np.ndarray]]


def _plan(model: MultiPathNet, cfg: ExportConfig, ds: Optional[PreparedDataset]) -> _Plan:
    entries = entry_names(model.domains)
    return _Plan(entries=entries, methods={d: f"forward_{e}" for d, e in entries.items()},
                 crop=int(model.space.input_size), want_pte="executorch" in cfg.formats,
                 want_onnx="onnx" in cfg.formats, int8=cfg.int8 and ds is not None)


def _no_data_notes(cfg: ExportConfig, ds: Optional[PreparedDataset], log: Callable[[str], None]) -> list[str]:
    """What the report must say when no prepared data was given (random parity inputs, no int8)."""
    if ds is not None:
        return []
    note = (f"no prepared dataset: parity measured on {RANDOM_PARITY_IMAGES} seeded random inputs per domain, no "
            f"accuracies" + ("; int8 not produced (no calibration images)" if cfg.int8 else ""))
    log(note)
    return [note]


def _trace(model: MultiPathNet, plan: _Plan, cfg: ExportConfig, ds: Optional[PreparedDataset], out: Path,
           log: Callable[[str], None]) -> _Traced:
    """Trace each domain's program once: .pte programs (fp32, int8) in memory, ONNX graphs written under out/onnx."""
    from mpnas.export import onnx_graphs, pte

    example = torch.zeros(1, 3, plan.crop, plan.crop)
    traced = _Traced()
    if plan.want_onnx:
        (out / ONNX_DIR).mkdir()
    for k, d in enumerate(model.domains, 1):
        t0 = time.perf_counter()
        program = domain_program(model, d)
        traced.evalsets[d] = _eval_set(ds, d, plan.crop, seed=k)
        calib = _calibration(ds, d, plan.crop, cfg.calibration_images) if plan.int8 else None
        method, entry = plan.methods[d], plan.entries[d]
        if plan.want_pte:
            traced.fp_programs[method] = pte.export_program(program, example)
            if plan.int8:
                traced.q_programs[method] = pte.quantize_pt2e(program, example, torch.from_numpy(calib))
        if plan.want_onnx:
            traced.onnx_fp[d] = onnx_graphs.export_onnx(program, example, out / ONNX_DIR / f"{entry}.onnx", cfg.opset)
            if plan.int8:
                traced.onnx_q[d] = onnx_graphs.quantize_onnx(traced.onnx_fp[d], out / ONNX_DIR / f"{entry}.int8.onnx",
                                                             [calib])
        log(f"{d}: traced{' + int8 calibrated' if plan.int8 else ''} ({k}/{len(model.domains)}, "
            f"{time.perf_counter() - t0:.1f}s)")
    return traced


def _write_pte(edge: object, methods: dict[str, str], path: Path) -> tuple[dict, PteRunner]:
    """Write a lowered program as the .pte at `path`; return its per-method constant tables and a runner."""
    from mpnas.export import pte

    tables = table_sharing(edge, methods)
    path.write_bytes(pte.to_pte_bytes(edge))
    return tables, PteRunner(path, methods)


def _lower_pte(model: MultiPathNet, plan: _Plan, cfg: ExportConfig, traced: _Traced, out: Path,
               log: Callable[[str], None], pool: object = None) -> tuple[Runners, dict]:
    """Lower the traced programs into model.pte (and model.int8.pte), sharing the work among `cfg.lower_workers`
    processes; return their runners and the sharing report."""
    from mpnas.export import pte
    from mpnas.export.parallel import INT8_COST, available_cpus, lower_programs

    runners: Runners = {}
    methods = plan.methods
    programs = {"fp32": traced.fp_programs, **({"int8": traced.q_programs} if plan.int8 else {})}
    workers = cfg.lower_workers or available_cpus()
    t0 = time.perf_counter()
    edges = lower_programs(programs, workers, costs={"int8": INT8_COST}, pool=pool)
    tables, runners["executorch"] = _write_pte(edges["fp32"], methods, out / PTE_FILE)
    int8_tables = None
    if plan.int8:
        int8_tables, runners["executorch_int8"] = _write_pte(edges["int8"], methods, out / PTE_INT8_FILE)
    files = PTE_FILE + (f" and {PTE_INT8_FILE}" if plan.int8 else "")
    log(f"{files}: {len(methods)} methods each lowered to XNNPACK ({time.perf_counter() - t0:.1f}s, up to "
        f"{workers} processes)")
    single = {}
    for d in model.domains if cfg.measure_sharing else []:
        single[d] = len(pte.lower_to_pte({methods[d]: traced.fp_programs[methods[d]]}))
        log(f"{d}: single-method .pte measured ({single[d]} B, not kept)")
    sharing = sharing_report((out / PTE_FILE).stat().st_size, tables, shared_weight_bytes(model), single or None,
                             int8_tables)
    log(f"sharing: combined {sharing['combined_pte_bytes']} B saves {sharing['saved_bytes']} B over separate "
        f"per-domain files (measured {sharing['how'].split(':')[0]})")
    return runners, sharing


def _lowering_pool(model: MultiPathNet, plan: _Plan, cfg: ExportConfig):
    """A context holding the started lowering workers (`parallel.start_workers`), or None when one process will do."""
    from contextlib import nullcontext

    from mpnas.export.parallel import INT8_COST, available_cpus, processes_for, start_workers

    if not plan.want_pte:
        return nullcontext(None)
    methods = {"fp32": len(model.domains), **({"int8": len(model.domains)} if plan.int8 else {})}
    pool = start_workers(processes_for(methods, cfg.lower_workers or available_cpus(), {"int8": INT8_COST}))
    return pool if pool is not None else nullcontext(None)


def _runners(model: MultiPathNet, plan: _Plan, cfg: ExportConfig, traced: _Traced, out: Path,
             log: Callable[[str], None], pool: object = None) -> tuple[Runners, Optional[dict]]:
    """Every runtime the export produced (executorch[_int8], onnx[_int8]) and the .pte sharing report (or None)."""
    runners: Runners = {}
    sharing = None
    if plan.want_pte:
        runners, sharing = _lower_pte(model, plan, cfg, traced, out, log, pool)
    if plan.want_onnx:
        runners["onnx"] = OnnxRunner(traced.onnx_fp)
        if plan.int8:
            runners["onnx_int8"] = OnnxRunner(traced.onnx_q)
    return runners, sharing


def _domain_row(model: MultiPathNet, d: str, plan: _Plan, cfg: ExportConfig,
                evalset: tuple[str, np.ndarray, Optional[np.ndarray]], runners: Runners) -> dict:
    """One domain's parity (fp32 runtimes gate `ok`; int8 ones are reported only), accuracy and batch-1 latency."""
    split, x, y = evalset
    eager = _eager(model, d)
    ref = _batched(eager, x)
    row: dict = {"entry": plan.entries[d], "method": plan.methods[d], "split": split, "images": int(len(x)),
                 "parity": {}, "accuracy": {}, "latency_ms": {}}
    if y is not None:
        row["accuracy"]["eager"] = measure.accuracy(ref, y)
    x1 = x[:1]
    row["latency_ms"]["eager"] = measure.latency_ms(eager, x1, cfg.latency_repeats)
    for name, runner in runners.items():
        logits = runner(d, x)
        if name in ("executorch", "onnx"):
            p = measure.parity(ref, logits)
            p["ok"] = p["agreement"] >= cfg.parity_min_agreement and p["max_abs_diff"] <= cfg.parity_atol
            row["parity"][name] = p
        else:
            row["parity"][name] = {**measure.parity(ref, logits), "ok": None}
        if y is not None:
            row["accuracy"][name] = measure.accuracy(logits, y)
        row["latency_ms"][name] = measure.latency_ms(lambda v, r=runner: r(d, v), x1, cfg.latency_repeats)
    if y is not None:
        row["int8_accuracy_drop"] = {n: row["accuracy"]["eager"] - row["accuracy"][n]
                                     for n in ("executorch_int8", "onnx_int8") if n in row["accuracy"]}
    return row


def _parity_and_latency(model: MultiPathNet, plan: _Plan, cfg: ExportConfig, traced: _Traced, runners: Runners,
                          log: Callable[[str], None]) -> tuple[dict[str, dict], bool]:
    """({domain: row}, whether every fp32 runtime agrees with the eager model on every domain)."""
    domains_report, parity_ok = {}, True
    for d in model.domains:
        row = _domain_row(model, d, plan, cfg, traced.evalsets[d], runners)
        domains_report[d] = row
        parity_ok &= all(p["ok"] for p in row["parity"].values() if p["ok"] is not None)
        fails = [n for n, p in row["parity"].items() if p["ok"] is False]
        log(f"{d}: parity {'FAILED for ' + ', '.join(fails) if fails else 'ok'} on {row['images']} {row['split']} "
            f"images")
    return domains_report, parity_ok


def export_loaded(model: MultiPathNet, source: dict, out: Path, cfg: ExportConfig,
                  ds: Optional[PreparedDataset], log: Callable[[str], None]) -> dict:
    """Write the exports, manifest and report of an in-memory model into the (empty) directory `out`.

    `source` describes the model directory (`dir`, `sha256` of its weights) for the manifest's lineage."""
    model = model.eval()
    if ds is not None:
        ds.require_domains(model.domains, f"model {source.get('dir', '<in memory>')}")
    meta = _domain_meta(model, ds)
    plan = _plan(model, cfg, ds)
    notes = _no_data_notes(cfg, ds, log)
    with _lowering_pool(model, plan, cfg) as pool:  # workers import while this process traces
        traced = _trace(model, plan, cfg, ds, out, log)
        runners, sharing = _runners(model, plan, cfg, traced, out, log, pool)
    domains_report, parity_ok = _parity_and_latency(model, plan, cfg, traced, runners, log)
    files = {p.relative_to(out).as_posix(): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    report = {"format": "mpnas.export_report/1", "mpnas_version": __version__, "parity_ok": bool(parity_ok),
              "thresholds": {"parity_atol": cfg.parity_atol, "parity_min_agreement": cfg.parity_min_agreement},
              "source_model": source, "formats": list(cfg.formats), "int8": plan.int8,
              "latency": {"batch": 1, "statistic": "median", "repeats": cfg.latency_repeats,
                          "torch_threads": torch.get_num_threads()},
              "domains": domains_report, "sharing": sharing, "file_bytes": files, "notes": notes}
    _write_outputs(out, report, model, cfg, meta)
    return report


def _write_outputs(out: Path, report: dict, model: MultiPathNet, cfg: ExportConfig, meta: dict[str, dict]) -> None:
    """manifest.json (after every model file exists, so its hashes cover them) and the two report files."""
    arch_data = model.meta.get("data", {})
    crop = int(model.space.input_size)
    entries = entry_names(model.domains)
    manifest = {
        "format": FORMAT, "mpnas_version": __version__,
        "source_model": report["source_model"],
        "input": {"layout": "NCHW float32 RGB", "crop": crop, "resize": int(arch_data.get("size") or crop),
                  "rule": "any mode to RGB; resize the shorter side to `resize` (bilinear), centre crop a square of "
                          "`resize`, centre crop `crop`; scale to [0,1]; subtract the domain's mean, divide by its std"},
        "domains": {d: {"entry": entries[d], "method": f"forward_{entries[d]}", **meta[d],
                        "num_classes": model.num_classes[d], "genotype": model.genotypes[d].to_strings()}
                    for d in model.domains},
        "bn_mode": model.bn_mode,
        "executorch": ({"fp32": PTE_FILE, "int8": PTE_INT8_FILE if report["int8"] else None}
                       if "executorch" in cfg.formats else None),
        "onnx": ({"fp32": {d: f"{ONNX_DIR}/{entries[d]}.onnx" for d in model.domains},
                  "int8": {d: f"{ONNX_DIR}/{entries[d]}.int8.onnx" for d in model.domains} if report["int8"] else None,
                  "input_name": "input", "output_name": "logits"} if "onnx" in cfg.formats else None),
        "files": file_entries(out),
    }
    atomic_write_json(out / MANIFEST_FILE, manifest)
    atomic_write_json(out / REPORT_JSON, report)
    atomic_write_text(out / REPORT_MD, render_markdown(report))
