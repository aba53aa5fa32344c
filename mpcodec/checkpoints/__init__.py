"""Any mpcodec run's parameters, config and step from its workdir, and a layer's activations.

Metrics from a checkpoint take three lines (any workdir of launch.mono_poly, launch.dynamics, launch.codec):

    from mpcodec import checkpoints
    from mpcodec.metrics import participation_ratio

    run = checkpoints.load("runs/mono_poly", stage="phase2")          # its latest step; or step=...
    acts_SxNxH = checkpoints.activations(run, layer="hidden_0")       # on the run's own test inputs
    print(participation_ratio(acts_SxNxH[0]), run.params["hidden_0"]["kernel"].shape, run.config["seed"])

`load` reads only what a run wrote (the JSON metadata beside each checkpoint and Orbax's own record of
the arrays) with library code (`mpcodec.core`, `mpcodec.models`, `mpcodec.data`, `mpcodec.sae`): it needs
none of the study code that trained the run, and works for a run of an older checkout as long as the
layout below holds.

Stages: every folder of step-numbered checkpoints under a workdir is one stage.

    checkpoints/phase1, checkpoints/phase2,     mono->poly (launch.mono_poly) and its control arm; the
    checkpoints/control                         default stage is the last phase (phase2)
    checkpoints/sae, checkpoints/squeezer,      the codec (launch.codec): SAE, main Squeezer, tax-sweep
    checkpoints/squeezer_m<M>,                  Squeezers, the dead-latent setting's SAEs
    checkpoints/dead_latents_aux<A>
    dynamics/checkpoints/<arch>__<dataset>/train    a dynamics run (launch.dynamics), stage "<arch>@<dataset>"

Run kinds (`Run.kind`) and what `activations` gives:

    "mono_poly"  the MLP its metadata describes; layers hidden_0, ...; inputs default to the bars
                 images its metadata describes (split "test" or "train", flattened): the shared draw of
                 the run's data seed, which with per-seed data (`data_per_seed`) are images of the same
                 distribution rather than each seed's own
    "dynamics"   the zoo model (MLP, CNN, Transformer) of `config["arch"]`; layers by name
                 (`layer_names(run)`); inputs default to the run's dataset (from `data_dir` or
                 $MPCODEC_DATA_DIR; "bars" is generated)
    "sae"        layers "latents" (dense codes on raw activations, input scale folded in) and
                 "reconstruction"; `inputs` must be given: the codec's activation sources (ground truth,
                 a mono->poly layer, MiniLM on text) live in the codec study, not in the library
    "squeezer"   layers "latents", "latents_hat", "x_hat_sae", "x_hat_squeezed", "neurons"; `inputs` must
                 be given (as for "sae")
    "other"      a checkpoint of the one run loop that none of the above describes: params, state,
                 config and step load; activations are not supported

Every array keeps the leading run axis the run was trained with: seeds for mono->poly and dynamics,
(k, seed) runs k-major for an SAE stage, (K, SAE run) K-major for a Squeezer stage; `Run.seeds` names
each entry. Errors are one line (`CheckpointError`, or `ValueError` for a bad argument) naming the
workdir, the stage and the step.

Reading a plain Orbax directory (no mpcodec at all): each stage folder is an `ocp.CheckpointManager`
directory whose steps hold the items "state" (the array pytree: {"state": train state, "history":
{phase: metrics}}), "metadata" (JSON) and "integrity" (JSON checksums):

    import orbax.checkpoint as ocp
    manager = ocp.CheckpointManager("runs/mono_poly/checkpoints/phase2", item_names=("state", "metadata"))
    step = manager.latest_step()
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), metadata=ocp.args.JsonRestore()))
    params = restored["state"]["state"]["params"]      # seed axis first
    config = restored["metadata"]["full_config"]       # "config" holds the training-defining part

`StandardRestore()` without a target restores the arrays as saved (named tuples and dataclasses, such as
optimizer states, come back as dicts); pass a target pytree of `jax.ShapeDtypeStruct`s to place them on
devices of your choice.
"""

from mpcodec.checkpoints._activations import activations, layer_names, model, run_inputs
from mpcodec.checkpoints._load import Run, load, stages

__all__ = ["Run", "activations", "layer_names", "load", "model", "run_inputs", "stages"]
