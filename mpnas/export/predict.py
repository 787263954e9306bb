"""Classify image files with an export, without the training code: `Predictor.load(path).predict(image, domain)`.

Preprocessing is exactly the training pipeline's (manifest `input`): any PIL mode to RGB, shorter side to `resize`
(bilinear), centre square, centre crop `crop`, /255, per-domain mean/std.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from mpnas.export.manifest import read_manifest
from mpnas.export.runtimes import OnnxRunner, PteRunner, quiet_native

RUNTIMES = ("auto", "executorch", "onnx")


def _executorch_available() -> bool:
    try:
        with quiet_native():  # importing it logs torch warnings
            import executorch.runtime  # noqa: F401
    except ImportError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def confined(root: Path, rel: object) -> Path:
    """A manifest's file entry as a path inside the export directory: absolute names, `..` and symlinks that leave
    it are refused, so an edited manifest cannot make `predict` load a file from elsewhere."""
    manifest = root / "manifest.json"
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"{manifest}: file entry {rel!r} must be a non-empty relative path")
    base = root.resolve()
    path = (root / rel).resolve()
    if Path(rel).is_absolute() or (path != base and base not in path.parents):
        raise ValueError(f"{manifest}: file entry {rel!r} lies outside the export directory {root}; "
                         f"re-run `mpnas export`")
    return root / rel


class Predictor:
    """Top-k classes of images for a named domain, run by the ExecuTorch runtime (.pte) or onnxruntime (ONNX)."""

    def __init__(self, manifest: dict, runner, runtime: str):
        self.manifest, self.runner, self.runtime = manifest, runner, runtime
        self.domains = list(manifest["domains"])

    @classmethod
    def load(cls, path: str | Path, runtime: str = "auto", int8: Optional[bool] = None) -> "Predictor":
        """`path`: an export directory or one of its .pte/.onnx files (a file picks its runtime and precision).

        runtime="auto" prefers the .pte when the ExecuTorch runtime is installed. int8=None means fp32 unless `path`
        names an int8 file."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
        path = Path(path)
        manifest = read_manifest(path)
        root = Path(manifest["_root"])
        if path.is_file():
            by_suffix = "executorch" if path.suffix == ".pte" else "onnx" if path.suffix == ".onnx" else None
            if by_suffix is None:
                raise ValueError(f"{path}: expected an export directory, a .pte or an .onnx file")
            if runtime not in ("auto", by_suffix):
                raise ValueError(f"{path}: a {by_suffix} file cannot run with runtime={runtime}")
            runtime = by_suffix
            int8 = ".int8." in path.name if int8 is None else int8
        precision = "int8" if int8 else "fp32"
        if runtime == "auto":
            runtime = "executorch" if manifest.get("executorch") and _executorch_available() else "onnx"
        section = manifest.get(runtime)
        if not section or not section.get(precision):
            raise ValueError(f"{root}: the export has no {precision} {runtime} model "
                             f"(see {root / 'manifest.json'})")
        if runtime == "executorch":
            methods = {d: info["method"] for d, info in manifest["domains"].items()}
            pte = confined(root, section[precision])
            try:
                runner = PteRunner(pte, methods)
            except (FileNotFoundError, ValueError):
                raise
            except Exception as exc:  # noqa: BLE001 - the runtime's load errors have no common type
                raise ValueError(f"{pte}: not a loadable ExecuTorch program ({_first_line(exc)}); "
                                 f"re-run `mpnas export`") from None
        else:
            if not isinstance(section[precision], dict):
                raise ValueError(f"{root / 'manifest.json'}: onnx.{precision} must map domains to files")
            runner = OnnxRunner({d: confined(root, p) for d, p in section[precision].items()})
        return cls(manifest, runner, runtime)

    def _domain(self, domain: str) -> dict:
        if domain not in self.manifest["domains"]:
            raise ValueError(f"unknown domain {domain!r}; valid domains: {', '.join(self.domains)}")
        return self.manifest["domains"][domain]

    def preprocess(self, image: str | Path, domain: str) -> np.ndarray:
        """One image file -> (1, 3, crop, crop) float32, normalised with the domain's mean/std."""
        from PIL import Image, UnidentifiedImageError

        from mpnas.data.images import resize_center_crop, to_rgb

        info = self._domain(domain)
        spec = self.manifest["input"]
        image = Path(image)
        if not image.is_file():
            raise FileNotFoundError(f"{image}: no such image file")
        try:
            with Image.open(image) as im:
                im.load()
                rgb = np.asarray(resize_center_crop(to_rgb(im), int(spec["resize"])), dtype=np.float32)
        except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise ValueError(f"{image}: unreadable image ({exc})") from None
        crop = int(spec["crop"])
        top, left = (rgb.shape[0] - crop) // 2, (rgb.shape[1] - crop) // 2
        x = rgb[top:top + crop, left:left + crop] / 255.0
        x = (x - np.asarray(info["mean"], np.float32)) / np.asarray(info["std"], np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)

    def logits(self, x: np.ndarray, domain: str) -> np.ndarray:
        self._domain(domain)
        if isinstance(self.runner, OnnxRunner):
            try:
                self.runner.session(domain)
            except Exception as exc:  # noqa: BLE001 - onnxruntime's load errors have no common type
                raise ValueError(f"{self.runner.paths[domain]}: not a loadable ONNX model ({_first_line(exc)}); "
                                 f"re-run `mpnas export`") from None
        return self.runner(domain, x)

    def predict(self, image: str | Path, domain: str, top_k: int = 3) -> list[tuple[str, float]]:
        """[(class name, softmax probability)] for the `top_k` most likely classes, best first."""
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        z = self.logits(self.preprocess(image, domain), domain)[0].astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        classes = self._domain(domain)["classes"]
        order = np.argsort(-p, kind="stable")[:top_k]
        return [(classes[i], float(p[i])) for i in order]
