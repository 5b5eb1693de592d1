"""The models: names -> "module:Class" strings plus constructor options, imported when asked.

A user's own model registers the same way (one `ModelEntry` below), or is given directly as
"mypkg.mymodel:MyVAE" (or "mine=mypkg.mymodel:MyVAE") wherever a model name is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.errors import BenchError
from bench.registry import Registry, load


@dataclass(frozen=True)
class ModelEntry:
    target: str  # "module:Class"
    options: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    in_default_grid: bool = True  # False: trained only when named (`--models`), e.g. another reading of a baseline


MODELS: Registry[ModelEntry] = Registry("model", {
    "ccvae": ModelEntry("bench.ccvae:CCVAE", {"latents_per_label": 1},
                        "CCVAE (Joy et al. 2021), one characteristic latent per label"),
    "mccvae": ModelEntry("bench.ccvae:CCVAE", {"latents_per_label": 2},
                         "MCCVAE (Bardusco and Bourbon's report), two characteristic latents per label"),
    "m2": ModelEntry("baselines.m2:M2", {}, "M2 (Kingma et al. 2014), labels in the latent space"),
    "mvae": ModelEntry("baselines.mvae:MVAE", {}, "MVAE (Wu & Goodman 2018), product of experts, one per label"),
    "csvae": ModelEntry("baselines.csvae:CSVAE", {}, "CSVAE (Klys et al. 2018), a latent subspace per label"),
    "diva": ModelEntry("baselines.diva:DIVA", {}, "modified DIVA (CCVAE paper, appendix C.4)"),
    "diva-prior-net": ModelEntry("baselines.diva_prior_net:DIVAPriorNet", {},
                                 "modified DIVA with DIVA's own conditional-prior network p(z_c | y) (the other "
                                 "reading of C.4)", in_default_grid=False),
}, hint=" or give 'module:Class'")


def default_models() -> tuple[str, ...]:
    """The models a grid trains when none are named."""
    return tuple(name for name, model in MODELS.items() if model.in_default_grid)


def named(choice: str) -> tuple[str, str | None]:
    """A model choice as (name, target): "ccvae" → ("ccvae", None); "pkg.mod:Class" → ("pkg.mod:Class", None);
    "mine=pkg.mod:Class" → ("mine", "pkg.mod:Class"), so that a user's class gets a name for its folders and rows."""
    name, sep, target = choice.partition("=")
    if not sep:
        model_entry(choice)  # validated here: an unknown name is one line naming the registered ones
        return choice, None
    if not name or "/" in name or ":" in name or ":" not in target:
        raise BenchError(f"model '{choice}' must be NAME=package.module:Class, a name without '/' or ':'")
    if name in MODELS:
        raise BenchError(f"model name '{name}' is a registered model's; choose another name for {target}")
    return name, target


def model_entry(name: str) -> ModelEntry:
    """The registry entry for `name`, or an entry for a literal "module:Class" target."""
    return ModelEntry(name) if ":" in name and name not in MODELS else MODELS[name]


def resolve(name: str) -> type:
    """Import and return the class registered under `name`."""
    return load(model_entry(name).target, f"model '{name}'")
