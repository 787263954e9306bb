"""Run the export jobs listed in a JSON file, one after the other, in this process (started by tests/export/conftest.py
in the background). Each job's report is written to `<root>/<name>.report.json` once its export is complete; a
failure prints its traceback and stops, and the fixture waiting for the job shows this process's output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mpnas.config import ExportConfig
from mpnas.export import export_model


def run_job(root: Path, job: dict) -> None:
    report = export_model(job["model_dir"], root / job["name"], ExportConfig(**job["cfg"]), data_dir=job["data_dir"],
                          progress=False)
    tmp = root / f"{job['name']}.report.json.tmp"
    tmp.write_text(json.dumps(report))  # plain JSON types only: a value JSON cannot hold fails here, loudly
    os.replace(tmp, root / f"{job['name']}.report.json")  # the fixture reads only complete reports


def main(jobs_file: str) -> int:
    root = Path(jobs_file).parent
    for job in json.loads(Path(jobs_file).read_text()):
        run_job(root, job)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
