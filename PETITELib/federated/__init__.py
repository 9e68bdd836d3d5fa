"""Federated fine-tuning of one PETITE adapter across hospitals, on NVIDIA FLARE.

Sites with the same scanner model each keep their scans; they train one adapter together by
exchanging adapter tensors only (about 1 % of the base model). The base model is fixed and
shared: every site checks its copy against the federation's SHA-256 before training.

Modules, one job each:
- ``plan``: what a federation trains (base, PEFT spec, rounds, settings, sites) and the
  ``petite_federation.json`` file every app of the job carries;
- ``site``: one site's part, without FLARE: verify the base, validate the global adapter on the
  site's validation subjects, train it for one round on the site's crops;
- ``site_script``: the FLARE Client API script each site runs (receive, validate, train, send);
- ``controller``: the server workflow (FedAvg over adapter tensors weighted by training crops,
  best global round by the sites' mean validation PSNR);
- ``persistor``: loads the initial adapter and writes the result as an ordinary adapter file;
- ``wire``: a FLARE filter that lets only the adapter's tensors through and records what crossed;
- ``job``: writing the FLARE job folder, running it in FLARE's simulator, reading its result;
- ``bench``: federated vs pooled vs single-site fine-tuning on simulated cohorts.

NVIDIA FLARE is an optional dependency (``pip install 'petite[federated]'``); only ``plan`` and
``site`` import without it.
"""
from __future__ import annotations

from ..errors import PetiteError


def require_flare() -> str:
    """The installed NVIDIA FLARE version; PetiteError with the install command when it is missing."""
    try:
        import nvflare
    except ImportError:
        raise PetiteError("petite federated needs NVIDIA FLARE: pip install 'petite[federated]' "
                          "(or pip install nvflare)") from None
    return str(nvflare.__version__)
