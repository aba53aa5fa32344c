"""The mono->poly experiment: orientation first, then orientation XOR colour, 16 seeds at once.

Run (training, then analysis from the checkpoints):
  python -m launch.mono_poly --config=configs/mono_poly.py --workdir=runs/mono_poly
Seconds-long smoke run:
  python -m launch.mono_poly --config=configs/mono_poly.py:smoke --workdir=runs/mono_poly_smoke
Override any knob from the command line, e.g. --config.num_seeds=64 --config.phase2.steps=6000.
"""

from mpcodec.core import configuration
from mpcodec.studies.mono_poly.config import MonoPolyConfig

# Every default is MonoPolyConfig's (mpcodec/studies/mono_poly/config.py); this file changes none.
# Worth knowing: data_per_seed=True (each seed draws its own dataset and minibatch order, so intervals
# over seeds cover the data draw) and control_arm=True (phase 2 repeated on the phase-1 task; H1-H3 are
# tested as XOR minus control).
PRESETS = {
    # Seconds-long: few seeds, small splits, 60 steps a phase; marked smoke, so its report gives no verdict.
    "smoke": {
        "smoke": True, "num_seeds": 4, "data.num_train": 512, "data.num_test": 256, "chunk_steps": 20,
        "phase1.steps": 60, "phase1.checkpoint_every": 20, "phase2.steps": 60,
        "phase2.checkpoint_every": 20, "analysis.num_sample_images": 8,
    },
}

get_config = configuration.config_file(MonoPolyConfig, presets=PRESETS)
