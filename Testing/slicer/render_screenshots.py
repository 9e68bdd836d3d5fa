"""Render the extension's screenshots (docs/screenshots) from real output, off-screen.

    .venv/bin/python Testing/slicer/render_screenshots.py [--out docs/screenshots]

The sample pair shipped with PETITE is loaded by the module's logic, reconstructed with adapter
``auto`` (a real `petite` process on the shipped CPU model) and compared with its long scan
(Compare: metrics, signed and absolute error maps with their colour maps and window). The slice
views are then drawn by Slicer's own MRML display pipeline from the slicer-core wheel
(``vtkMRMLSliceLogic`` reslicing, window/level, colour lookup and foreground blending, exactly as
in a Slicer slice view); matplotlib only lays the images out with titles, the metrics and a colour
bar. The wheel lacks Slicer's colour-table files, so the two tables the module uses
(``DivergingBlueRed``, ``Inferno``) are made here under the same node IDs. The figures' numbers are
written to ``slicer-screenshots.json`` beside the images.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from petite_slicer_support import REPO, import_module_file, install_stand_ins, new_scene  # noqa: E402

VIEW_SIZE = 320


def _color_table(scene, singleton: str, colors: np.ndarray):
    """A colour table node whose ID is Slicer's for the colour file ``singleton`` (e.g. FileInferno.txt)."""
    import slicer

    node = slicer.vtkMRMLColorTableNode()
    node.SetTypeToUser()
    node.SetSingletonTag(singleton)
    node.SetName(singleton[len("File"):-len(".txt")])
    node.SetNumberOfColors(len(colors))
    for index, (r, g, b) in enumerate(colors):
        node.SetColor(index, node.GetName(), float(r), float(g), float(b), 1.0)
    scene.AddNode(node)
    return node


def _slice_image(scene, app, orientation: str, background, foreground=None, opacity=0.0) -> np.ndarray:
    """One slice view drawn by vtkMRMLSliceLogic: (rows, columns, RGB) uint8, through the volume centre."""
    import slicer
    from vtk.util.numpy_support import vtk_to_numpy

    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(scene)
    logic.SetMRMLApplicationLogic(app)
    node = logic.AddSliceNode({"Axial": "Red", "Coronal": "Green", "Sagittal": "Yellow"}[orientation])
    node.SetOrientation(orientation)
    composite = logic.GetSliceCompositeNode()
    composite.SetBackgroundVolumeID(background.GetID())
    composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
    composite.SetForegroundOpacity(opacity)
    node.SetDimensions(VIEW_SIZE, VIEW_SIZE, 1)
    logic.FitSliceToAll()
    producer = logic.GetImageDataConnection().GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(0)
    width, height, _ = image.GetDimensions()
    pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    return pixels[::-1, :, :3]  # VTK rows go upwards


def render(out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import slicer

    install_stand_ins()
    petite = import_module_file()
    scene = slicer.mrmlScene = new_scene()
    app = slicer.vtkMRMLApplicationLogic()
    app.SetMRMLScene(scene)
    colors = slicer.vtkMRMLColorLogic()
    colors.SetMRMLScene(scene)
    ramp = np.linspace(0, 1, 256)
    diverging = np.stack([np.clip(2 * ramp, 0, 1), 1 - np.abs(2 * ramp - 1), np.clip(2 - 2 * ramp, 0, 1)], axis=1)
    _color_table(scene, "FileDivergingBlueRed.txt", diverging)
    _color_table(scene, "FileInferno.txt", plt.get_cmap("inferno")(ramp)[:, :3])

    with tempfile.TemporaryDirectory(prefix="PETITE-screenshots-") as work:
        logic = petite.PETITELogic(modelsDir=Path(work) / "models")
        short, long_ = logic.loadSampleData()
        output = logic.reconstruct(short, adapter="auto", device="cpu")
        parameters = logic.getParameterNode()
        parameters.inputVolume, parameters.reconstructedVolume, parameters.referenceVolume = short, output, long_
        metrics = logic.compareInScene(parameters)

    top = float(np.percentile(slicer.util.arrayFromVolume(long_), 99.5))
    for node in (short, output, long_):
        display = node.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(0.0, top)
    signed = parameters.signedErrorVolume
    legend = logic.colorLegend(signed)
    low, high = signed.GetDisplayNode().GetWindowLevelMin(), signed.GetDisplayNode().GetWindowLevelMax()
    m_in, m_out = metrics["input"], metrics["reconstruction"]

    figure, axes = plt.subplots(2, 3, figsize=(10.5, 7.4), dpi=110)
    titles = (f"short scan (5 min)\nPSNR {m_in['psnr']:.2f} dB, SSIM {m_in['ssim']:.3f}",
              f"PETITE reconstruction\nPSNR {m_out['psnr']:.2f} dB, SSIM {m_out['ssim']:.3f}",
              "long scan (30 min, reference)")
    for row, orientation in enumerate(("Axial", "Coronal")):
        for column, node in enumerate((short, output, long_)):
            axes[row, column].imshow(_slice_image(scene, app, orientation, node))
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(titles[column], fontsize=10)
    figure.suptitle(f"PETITE in 3D Slicer: sample pair (simulated scanner 4), adapter auto\n"
                    f"{output.GetAttribute('PETITE.models')}", fontsize=9)
    figure.tight_layout()
    figure.savefig(out / "slicer-reconstruct.png")
    plt.close(figure)

    figure, axes = plt.subplots(1, 3, figsize=(10.5, 4.2), dpi=110,
                                gridspec_kw={"width_ratios": [1, 1, 0.08]})
    for column, orientation in enumerate(("Axial", "Coronal")):
        axes[column].imshow(_slice_image(scene, app, orientation, output, signed, 0.5))
        axes[column].set_axis_off()
        axes[column].set_title(f"{orientation.lower()}: reconstruction with the signed error map (50 %)", fontsize=9)
    bar = matplotlib.colorbar.ColorbarBase(axes[2], cmap=matplotlib.colors.ListedColormap(diverging),
                                           norm=matplotlib.colors.Normalize(low, high))
    bar.set_label(legend.GetTitleText(), fontsize=8)
    figure.suptitle(f"Compare: inside the head PSNR {m_in['psnr']:.2f} -> {m_out['psnr']:.2f} dB, "
                    f"NRMSE {m_in['nrmse']:.4f} -> {m_out['nrmse']:.4f} (short scan -> reconstruction)", fontsize=10)
    figure.tight_layout()
    figure.savefig(out / "slicer-compare.png")
    plt.close(figure)

    record = {"sample": "PETITELib.sample_data (scanner 4, simulated, seed 0)", "adapter": "auto",
              "models": output.GetAttribute("PETITE.models"), "metrics": metrics,
              "error_window": [low, high], "view_size": VIEW_SIZE,
              "renderer": "slicer-core vtkMRMLSliceLogic (off-screen)",
              "command": "python Testing/slicer/render_screenshots.py"}
    (out / "slicer-screenshots.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(render(arguments.out)["metrics"]))
