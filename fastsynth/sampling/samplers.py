"""Sampling loops using diffusers' noise schedulers.

``sample`` is one plain function: draw x_T, then for each timestep ask the denoiser for its output and let the
scheduler step. The scheduler object is created per call (they are stateful), the denoiser is any callable
``out = f(x_t, t, cond)`` (v or eps, as the model was trained), so every runtime backend (eager,
compile, ONNX Runtime, TensorRT) plugs in.

- ``dpmpp``: DPM-Solver++(2M), Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of DPMs".
- ``unipc``: UniPC-bh2, Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework".
- ``ddim``: DDIM (eta=0), Song et al. 2021, "Denoising Diffusion Implicit Models".
- ``ddpm``: ancestral DDPM, Ho et al. 2020 (the slow reference; stochastic, per-sample generators).
- ``distilled``: deterministic DDIM on the exact timestep grid a progressively distilled student was trained on
  (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models"); the grid is stored in
  the student's ``fastsynth.json`` and this is the default sampler of such a model.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import torch

from ..errors import FastsynthError

SAMPLER_NAMES = ("dpmpp", "unipc", "ddim", "ddpm", "distilled")
# defaults chosen from the quality-vs-NFE curve (benchmarks/results/quality_vs_nfe_cpu.json): UniPC at 6 NFE has
# the KID of DPM-Solver++ at 8 and lies within 1.5 KID std of DPM-Solver++ at 50 on the bundled model
DEFAULT_SAMPLER = "unipc"
DEFAULT_STEPS = {"dpmpp": 8, "unipc": 6, "ddim": 50, "ddpm": 1000}  # "distilled": the student's own grid


def grid_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """``steps`` timesteps, descending, evenly spaced and ending at the clean side: round(T*j/steps) - 1.

    The grids nest: the grid of ``steps`` is every other point of the grid of ``2 * steps``, which is what
    progressive distillation needs (a student step spans exactly two teacher steps)."""
    if steps < 1 or steps > num_train_timesteps:
        raise FastsynthError(f"{steps} steps: must be between 1 and {num_train_timesteps}")
    return [(2 * num_train_timesteps * j + steps) // (2 * steps) - 1 for j in range(steps, 0, -1)]


def to_x0_eps(out: torch.Tensor, x_t: torch.Tensor, a_t: torch.Tensor, prediction_type: str):
    """(x0, eps) implied by the network output at x_t, with a_t = alphas_cumprod[t] broadcastable to x_t."""
    sa, sb = a_t.sqrt(), (1 - a_t).sqrt()
    if prediction_type == "v_prediction":
        return sa * x_t - sb * out, sb * x_t + sa * out
    if prediction_type == "epsilon":
        return (x_t - sb * out) / sa, out
    raise FastsynthError(f"prediction type {prediction_type!r}: expected v_prediction or epsilon")


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, a_s: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM: the point at alphas_cumprod a_s on the line through (x0, eps)."""
    return a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps


class GridDDIM:
    """DDIM (eta = 0) on an explicit timestep grid, with the small scheduler interface ``sample`` uses."""

    init_noise_sigma = 1.0

    def __init__(self, grid, num_train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2",
                 prediction_type: str = "v_prediction"):
        import diffusers

        grid = [int(t) for t in grid]
        if not grid or any(b >= a for a, b in zip(grid, grid[1:])) or grid[-1] < 0 or grid[0] >= num_train_timesteps:
            raise FastsynthError(f"distilled sampler grid {grid}: must be strictly descending within "
                                 f"[0, {num_train_timesteps})")
        self.config = dict(grid=grid, num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                           prediction_type=prediction_type)
        ref = diffusers.DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule)
        self.alphas_cumprod = ref.alphas_cumprod.float()
        self.timesteps = torch.tensor(grid)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def set_timesteps(self, steps: int, device=None) -> None:
        if steps != len(self.config["grid"]):
            raise ValueError(f"this distilled model samples in exactly {len(self.config['grid'])} steps")
        self.timesteps = torch.tensor(self.config["grid"])

    def scale_model_input(self, x, t):
        return x

    def step(self, out, t, x, return_dict: bool = False):
        grid = self.config["grid"]
        i = grid.index(int(t))
        ac = self.alphas_cumprod.to(x.device)
        a_s = ac[grid[i + 1]] if i + 1 < len(grid) else torch.ones((), device=x.device)
        x0, eps = to_x0_eps(out, x, ac[int(t)], self.config["prediction_type"])
        return (ddim_step(x0, eps, a_s).to(x.dtype),)


def resolve_sampler(sampler: str | None, steps: int | None, meta: dict | None) -> tuple[str, int, list | None]:
    """(sampler, steps, grid): explicit choices win; otherwise the model's own default (a distilled model
    samples with its grid), otherwise DEFAULT_SAMPLER with its default steps."""
    own = (meta or {}).get("sampling") or {}
    grid = own.get("grid")
    if sampler is None:
        sampler = own.get("sampler", DEFAULT_SAMPLER)
    if sampler not in SAMPLER_NAMES:
        raise FastsynthError(f"--sampler {sampler!r}: choose one of {', '.join(SAMPLER_NAMES)}")
    if sampler == "distilled":
        if not grid:
            raise FastsynthError("--sampler distilled: this model was not made by `fastsynth distill` "
                                 "(its fastsynth.json has no sampling grid)")
        if steps is not None and steps != len(grid):
            raise FastsynthError(f"--steps {steps}: this distilled model samples in exactly {len(grid)} steps "
                                 "(or pick another --sampler)")
        return sampler, len(grid), list(grid)
    if steps is None:
        steps = own["steps"] if own.get("sampler") == sampler and own.get("steps") else DEFAULT_STEPS[sampler]
    return sampler, int(steps), None


def make_scheduler(name: str, num_train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2",
                   prediction_type: str = "v_prediction", grid: Sequence[int] | None = None):
    import diffusers

    if name == "distilled":
        if not grid:
            raise FastsynthError("the distilled sampler needs the model's timestep grid")
        return GridDDIM(grid, num_train_timesteps, beta_schedule, prediction_type)

    common = dict(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                  prediction_type=prediction_type)
    if name == "dpmpp":
        return diffusers.DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
                                                     lower_order_final=True, **common)
    if name == "unipc":
        return diffusers.UniPCMultistepScheduler(solver_order=2, lower_order_final=True, **common)
    if name == "ddim":
        # "trailing" spacing starts at t = T-1 where x_T really is noise ("leading" starts at T - T/steps)
        return diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing", **common)
    if name == "ddpm":
        return diffusers.DDPMScheduler(clip_sample=False, variance_type="fixed_small", timestep_spacing="trailing",
                                       **common)
    raise FastsynthError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLER_NAMES)}")


def start_steps(steps: int, strength: float) -> int:
    """How many of ``steps`` sampler steps a start part-way at ``strength`` in (0, 1] runs (at least one)."""
    if not 0.0 < strength <= 1.0:
        raise FastsynthError(f"strength {strength:g}: must be in (0, 1]")
    return max(1, min(steps, int(round(steps * strength))))


def sample(
    model_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler,
    noise: torch.Tensor,
    cond: torch.Tensor,
    steps: int,
    generators: Sequence[torch.Generator] | None = None,
    init: torch.Tensor | None = None,
    strength: float = 1.0,
) -> torch.Tensor:
    """Integrate from x_T = noise to x_0. ``generators`` (one per sample) drive any stochastic step.

    ``init`` (a clean state like x_0) with ``strength`` s in (0, 1): start part-way (SDEdit, Meng et al. 2022,
    "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential Equations"): only the last
    ``start_steps(steps, s)`` of the ``steps`` timesteps run, from ``init`` noised to the first of them with ``noise``
    (x_t = sqrt(a_t) init + sqrt(1 - a_t) noise). s = 1 (or no init) is the whole trajectory from noise."""
    scheduler = scheduler.__class__.from_config(scheduler.config)  # schedulers are stateful: a fresh one
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    if init is not None and strength < 1.0:
        skip = steps - start_steps(steps, strength)
        timesteps = timesteps[skip:]
        if hasattr(scheduler, "set_begin_index"):  # multistep solvers index their history from here
            scheduler.set_begin_index(skip)
        a = scheduler.alphas_cumprod.to(noise.device)[int(timesteps[0])].float()
        x = a.sqrt() * init.to(noise.dtype) + (1 - a).sqrt() * noise
    else:
        x = noise * scheduler.init_noise_sigma
    n = x.shape[0]
    stochastic = "generator" in inspect.signature(scheduler.step).parameters
    gens = list(generators) if generators is not None and stochastic else None
    for t in timesteps:
        x_in = scheduler.scale_model_input(x, t)
        out = model_fn(x_in, t.expand(n).to(x.device), cond)
        if gens is not None and n > 0:
            x = scheduler.step(out, t, x, generator=gens, return_dict=False)[0]
        else:
            x = scheduler.step(out, t, x, return_dict=False)[0]
    return x
