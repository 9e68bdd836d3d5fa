"""Generated tables of docs/simulator.md and docs/benchmarks: scanner physics, noise, scanner gap."""
from __future__ import annotations

from pathlib import Path

from ..data.scanners import SCANNERS, Scanner
from .sources import load_json

NOISE_JSON = "docs/benchmarks/simulator-noise.json"
GAP_JSON = "docs/benchmarks/scanner-gap.json"

# Which reference (docs/simulator.md, "Sources") supports each kind of difference.
_RECON_SOURCE = {"op-osem": "R5, R6", "psf-osem": "R6, R8, R9", "ramla-blob": "R11, R12, R13",
                 "fore-aw-osem": "R14, R15, R16"}


def _mm(value: float) -> str:
    return "none" if value <= 0 else f"{value:g} mm"


def _detector(scanner: Scanner) -> str:
    d = scanner.detector
    blocks = (f"{d.block_crystals}-crystal blocks, edges -{d.block_edge_loss:.0%}" if d.block_crystals
              else "no blocks (Anger-logic)")
    gaps = f", {d.heads} heads with {d.head_gap_fraction:.0%} of crystals in gaps" if d.heads else ""
    return (f"PSF {scanner.psf_fwhm_mm[0]:g}/{scanner.psf_fwhm_mm[1]:g} mm; {blocks}{gaps}; axial FOV "
            f"{d.axial_fov_mm:g} mm, 3D ring difference {d.max_ring_difference:.0%}")


def _attenuation(scanner: Scanner) -> str:
    c = scanner.corrections
    if c.attenuation == "ct":
        return f"CT, bilinear (bone {c.bone_mu_error:+.0%}), smoothed {_mm(c.mu_smoothing_mm)}"
    classes = {2: "air/tissue", 3: "air/tissue/bone"}.get(len(c.segmentation_classes), "none")
    return (f"transmission, {c.transmission_counts:g} blank counts/bin, mu bias {c.transmission_mu_bias:+.0%}, "
            f"smoothed {_mm(c.mu_smoothing_mm)}, segmented {classes}")


def _reconstruction(scanner: Scanner) -> str:
    r = scanner.reconstruction
    text = {"op-osem": f"OP-OSEM {r.iterations} it x {r.subsets} subsets",
            "psf-osem": f"PSF-OSEM {r.iterations} x {r.subsets} (model {r.psf_model_fwhm_mm[0]:g}/"
                        f"{r.psf_model_fwhm_mm[1]:g} mm)" if r.psf_model_fwhm_mm else "",
            "ramla-blob": f"3D-RAMLA, {r.iterations} passes, blob radius {r.blob_radius_voxels:g} voxels, "
                          f"alpha {r.blob_alpha:g}, relaxation {r.relaxation:g}",
            "fore-aw-osem": f"FORE (+{r.fore_axial_blur_mm:g} mm axial at 10 cm) + AW-OSEM {r.iterations} x "
                            f"{r.subsets}"}[r.algorithm]
    return f"{text}; post-filter {_mm(r.postfilter_fwhm_mm)}"


def scanner_differences_table(root: Path) -> str:
    """Every modelled difference between the scanners, with the sources (from the code's table)."""
    rows = [("family", lambda s: f"{s.family} ({s.manufacturer})", "R1, R2"),
            ("detector", _detector, "R4, R7, R10, R14"),
            ("attenuation correction", _attenuation, "R4, R10, R17, R18, R19"),
            ("randoms", lambda s: s.corrections.randoms.replace("-", " "), "R20, R21"),
            ("scatter (tail fit)", lambda s: ("per plane" if s.corrections.scatter_axial_smoothing <= 1 else
                                              f"smoothed over {s.corrections.scatter_axial_smoothing} planes"), "R22"),
            ("normalisation error", lambda s: (f"crystals {s.corrections.normalisation_crystal_error:.1%}, block "
                                               f"residual {s.corrections.normalisation_block_residual:.0%}"), "R23, R24"),
            ("reconstruction", _reconstruction, None),
            ("calibration", lambda s: f"x {s.corrections.calibration:.2f}", "R25"),
            ("count scale (2D model)", lambda s: f"{s.count_scale:g}", "assumed (see below)"),
            ("scatter / randoms fraction", lambda s: f"{s.scatter_fraction:.0%} / {s.randoms_fraction:.0%}", "R4, R7, R10, R14")]
    scanners = [SCANNERS[k] for k in sorted(SCANNERS)]
    lines = ["| | " + " | ".join(f"scanner {s.id}: {s.matrix[0]}x{s.matrix[1]}x{s.matrix[2]}" for s in scanners)
             + " | sources |", "|---" * (len(scanners) + 2) + "|"]
    for title, cell, source in rows:
        sources = source or ", ".join(sorted({ref for s in scanners for ref in
                                              _RECON_SOURCE[s.reconstruction.algorithm].split(", ")},
                                             key=lambda ref: int(ref[1:])))
        lines.append(f"| {title} | " + " | ".join(cell(s) for s in scanners) + f" | {sources} |")
    return "\n".join(lines) + "\n"


def simulator_noise_table(root: Path) -> str:
    """Measured resolution and noise per scanner (docs/benchmarks/simulator-noise.json)."""
    document = load_json(root, NOISE_JSON)
    lines = [f"Measured by `{document['command']}` on the zoo's full-mode cohorts ({document['subjects']} "
             "subjects per scanner).", "",
             "| scanner | effective FWHM transaxial / axial (mm) | short-frame WM noise | long WM noise | "
             "noise correlation FWHM (mm) |", "|---|---|---|---|---|"]
    for row in document["scanners"]:
        lines.append(f"| {row['scanner']} | {row['surrogate_fwhm_mm'][0]:.1f} / {row['surrogate_fwhm_mm'][1]:.1f} | "
                     f"{row['surrogate_short_noise']:.1%} | {row['long_noise']:.1%} | "
                     f"{row['surrogate_noise_fwhm_mm']:.1f} |")
    return "\n".join(lines) + "\n"


def scanner_gap_table(root: Path) -> str:
    """The scanner-gap table (docs/benchmarks/scanner-gap.json), as its generated .md shows it."""
    from ..engine.scanner_gap import gap_markdown

    body = gap_markdown(load_json(root, GAP_JSON)).split("\n", 2)[2]  # without the title line
    return body
