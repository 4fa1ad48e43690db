"""How long MedBank-mini takes to generate (docs/data.md): the 22 original tasks, default settings, one process.

Times `medmem.data.synth.generate` into a temporary folder and reports the seconds, the number of cases and
the bytes written. The machine's load average is recorded: on a shared machine the time is longer than on
an idle one.

    python benchmarks/synth_data.py --out benchmarks/results_synth_data_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

TASKS22 = ("ct_liver_tumor,ct_kidney,ct_aorta,ct_lung_nodule,ct_abdomen_multi,ct_vertebrae,mri_brain_tumor,"
           "mri_hippocampus,mri_cardiac,mri_prostate,us_echo_lv,us_breast_lesion,us_thyroid_nodule,xray_chest,"
           "xray_clavicle,endoscopy_polyp,endoscopy_instrument,dermoscopy_lesion,fundus_disc_cup,fundus_vessels,"
           "microscopy_nuclei,microscopy_glands")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=TASKS22)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    from medmem.data.synth import generate

    tasks = a.tasks.split(",")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        manifest = Path(generate(Path(tmp) / "mb", seed=0, size=a.size, tasks=tasks))
        secs = time.perf_counter() - t0
        if manifest.is_dir():
            manifest = manifest / "manifest.json"
        m = json.loads(manifest.read_text())
        cases = sum(len(t.get("cases", [])) for t in m.get("tasks", []))
        nbytes = sum(f.stat().st_size for f in (Path(tmp) / "mb").rglob("*") if f.is_file())
    res = dict(command=f"python benchmarks/synth_data.py --out {a.out}", tasks=len(tasks), size=a.size, seed=0,
               cases=cases, seconds=round(secs, 1), megabytes=round(nbytes / 1e6, 1), cpus=os.cpu_count(),
               machine=platform.machine(), loadavg_before=[round(v, 2) for v in load_before],
               loadavg_after=[round(v, 2) for v in os.getloadavg()])
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
