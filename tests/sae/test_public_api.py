"""Every function `mpcodec.sae` exports runs on valid inputs and names each array argument given the wrong rank.

The table below holds, per exported function, valid arguments, which of them are arrays and, for the
jittable ones, which are static (configs, step counts): those run under jax.jit, so their checks are
seen at trace time as in a compiled program. An export without an entry fails the test, so a new public
function comes with its entry.
"""

import inspect

import jax
import numpy as np
import pytest

from mpcodec import sae

D, N, M, ROWS = 6, 12, 4, 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny SAE result (2 steps), its SAELens folder, and a Squeezer config and state on its latents."""
  acts_TxD = np.random.default_rng(0).standard_normal((64, D)).astype(np.float32)
  config = sae.SAETrainingConfig(sae=sae.SAEConfig(num_latents=N, k=2, aux_k=2), steps=2, batch_size=8,
                                 chunk_steps=2)
  result = sae.train_sae(acts_TxD, config, progress=False)
  folder = sae.save_saelens(result, tmp_path_factory.mktemp("saelens"))["k2_seed0"]
  sae_state = result.state(2, 0)
  squeezer_cfg = sae.SqueezerConfig(num_neurons=M, k=2, aux_k=2).as_sae_config(N)
  x_BxD = acts_TxD[:ROWS]
  squeezer_state = jax.jit(sae.init_squeezer_state, static_argnums=(3, 4, 5))(
      jax.random.PRNGKey(1), sae_state, x_BxD, config.sae, squeezer_cfg, 10)
  sae_train_state = jax.jit(sae.init_state, static_argnums=(3, 4))(
      jax.random.PRNGKey(0), x_BxD, 2, config.sae, 10)
  return dict(acts_TxD=acts_TxD, config=config, result=result, folder=folder, sae_state=sae_state,
              squeezer_cfg=squeezer_cfg, squeezer_state=squeezer_state, sae_train_state=sae_train_state,
              x_BxD=x_BxD, tmp=tmp_path_factory.mktemp("out"))


SAE_STEP = ("cfg", "total_steps")
SQUEEZER_STEP = ("sae_cfg", "squeezer_cfg", "total_steps")
# name -> (valid keyword arguments built from the fixture, the names of the array arguments, the static
# arguments of a jitted call, or None for a plain call)
VALID = {
    "train_sae": (lambda t: dict(acts_TxD=t["acts_TxD"], config=t["config"], progress=False), ("acts_TxD",),
                  None),
    "save_saelens": (lambda t: dict(result=t["result"], directory=t["tmp"]), (), None),
    "load_saelens": (lambda t: dict(directory=t["folder"]), (), None),
    "init_state": (lambda t: dict(key=jax.random.PRNGKey(0), sample_BxD=t["x_BxD"], k=2, cfg=t["config"].sae,
                                  total_steps=10), ("key", "sample_BxD", "k"), SAE_STEP),
    "train_step": (lambda t: dict(state=t["sae_train_state"], x_BxD=t["x_BxD"], cfg=t["config"].sae,
                                  total_steps=10), ("x_BxD",), SAE_STEP),
    "apply": (lambda t: dict(state=t["sae_state"], x_BxD=t["x_BxD"], cfg=t["config"].sae), ("x_BxD",), ("cfg",)),
    "init_squeezer_state": (lambda t: dict(key=jax.random.PRNGKey(1), sae_state=t["sae_state"],
                                           sample_BxD=t["x_BxD"], sae_cfg=t["config"].sae,
                                           squeezer_cfg=t["squeezer_cfg"], total_steps=10),
                            ("key", "sample_BxD"), SQUEEZER_STEP),
    "squeezer_train_step": (lambda t: dict(state=t["squeezer_state"], sae_state=t["sae_state"], x_BxD=t["x_BxD"],
                                           sae_cfg=t["config"].sae, squeezer_cfg=t["squeezer_cfg"],
                                           total_steps=10), ("x_BxD",), SQUEEZER_STEP),
    "squeezer_reconstructions": (lambda t: dict(state=t["squeezer_state"], sae_state=t["sae_state"],
                                                x_BxD=t["x_BxD"], sae_cfg=t["config"].sae,
                                                squeezer_cfg=t["squeezer_cfg"]), ("x_BxD",),
                                 ("sae_cfg", "squeezer_cfg")),
}

def call(name, kwargs):
  """The export called with `kwargs`, under jax.jit with its static arguments when it has an entry for them."""
  static = VALID[name][2]
  function = getattr(sae, name)
  return function(**kwargs) if static is None else jax.jit(function, static_argnames=static)(**kwargs)


EXPORTED_FUNCTIONS = sorted(name for name in sae.__all__ if inspect.isfunction(getattr(sae, name)))


def test_every_exported_name_exists_and_every_function_has_an_entry():
  assert all(hasattr(sae, name) for name in sae.__all__)
  assert set(EXPORTED_FUNCTIONS) == set(VALID), "add the new export's valid inputs to VALID"
  for name in EXPORTED_FUNCTIONS:
    parameters = inspect.signature(getattr(sae, name)).parameters
    assert set(VALID[name][1]) | set(VALID[name][2] or ()) <= set(parameters), name
    assert getattr(sae, name).__doc__, f"{name} has no docstring"
  assert sae.__doc__ and "train_sae" in sae.__doc__


@pytest.mark.parametrize("name", EXPORTED_FUNCTIONS)
def test_runs_on_valid_inputs(trained, name):
  call(name, VALID[name][0](trained))


def _wrong_rank(value):
  """The same values with one axis more (a scalar becomes a vector)."""
  array = np.asarray(value)
  return np.zeros(array.shape + (2,), array.dtype) if array.ndim else np.zeros(3, array.dtype)


CASES = [(name, arg) for name in EXPORTED_FUNCTIONS for arg in VALID[name][1]]


@pytest.mark.parametrize("name, arg", CASES, ids=[f"{n}-{a}" for n, a in CASES])
def test_a_wrong_rank_array_is_named(trained, name, arg):
  kwargs = VALID[name][0](trained)
  kwargs[arg] = _wrong_rank(kwargs[arg])
  with pytest.raises(ValueError) as info:
    call(name, kwargs)
  message = str(info.value)
  assert message.startswith(f"{arg}: expected"), message
  assert "shape" in message and "\n" not in message


@pytest.mark.parametrize("name", ["train_step", "apply", "squeezer_train_step", "squeezer_reconstructions"])
def test_a_batch_of_another_width_names_the_sae_width(trained, name):
  kwargs = VALID[name][0](trained)
  kwargs["x_BxD"] = np.zeros((ROWS, D + 1), np.float32)
  with pytest.raises(ValueError, match=rf"^x_BxD: expected shape \(B, D={D}\) \(the SAE's input width\), got "
                                       rf"shape \({ROWS}, {D + 1}\)"):
    call(name, kwargs)
