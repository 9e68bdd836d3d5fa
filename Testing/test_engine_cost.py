"""``petite bench-cost``: the JSON and table it writes (a tiny run: CvT-GAN, batch 1, one step),
and its one-line refusals."""
import json

import pytest

from PETITELib import cli


@pytest.fixture(scope="module")
def cost_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("cost") / "cost.json"
    code = cli.main(["bench-cost", "--backbones", "cvtgan", "--methods", "full", "petite", "lora", "--steps", "1",
                     "--warmup", "0", "--batch-size", "1", "--threads", "1", "--device", "cpu", "--seed", "3",
                     "--out", str(out), "--quiet"])
    assert code == 0
    return out, json.loads(out.read_text())


def test_result_has_the_issue_shape_and_the_machine(cost_result):
    out, result = cost_result
    methods = result["backbones"]["cvtgan"]["methods"]
    assert set(methods) == {"full", "petite", "lora"}
    for entry in methods.values():
        assert entry["step_seconds"] > 0 and entry["peak_mem_mb"] > 0 and entry["trainable"] > 0
        assert entry["step_seconds"] >= entry["backward_seconds"] > 0 and entry["forward_seconds"] > 0
        assert entry["threads"] == 1 and entry["device"].startswith("cpu")
    assert methods["full"]["step_ratio_to_full"] == 1.0 and methods["full"]["mem_ratio_to_full"] == 1.0
    assert methods["petite"]["spec"].startswith("enc=vpt") and methods["petite"]["percent"] < 2
    assert result["config"]["batch_size"] == 1 and result["config"]["seed"] == 3
    assert {"torch", "python", "cpu_count", "processor", "load_average"} <= set(result["machine"])
    table = out.with_suffix(".md").read_text()
    assert "| petite |" in table and "| full |" in table and "peak / Full-FT" in table
    assert f"| `{methods['petite']['spec']}` |" in table


def test_frozen_layers_keep_no_activations(cost_result):
    """Frozen layers keep no inputs: with every convolution frozen (LoRA) the saved activations
    are under half of Full-FT's and no convolution keeps anything (measured by layer type); the
    cpu CvT-GAN's PETITE, which trains the full-resolution convolutions, keeps less than Full-FT."""
    _, result = cost_result
    full, petite, lora = (result["backbones"]["cvtgan"]["methods"][m] for m in ("full", "petite", "lora"))
    assert lora["activations_mb"] < 0.5 * full["activations_mb"]
    assert full["activations_by_layer_mb"].get("Conv3d", 0) > 0
    assert lora["activations_by_layer_mb"].get("Conv3d", 0) == 0
    assert petite["activations_mb"] < full["activations_mb"]


def test_existing_result_and_bad_options_are_refused_in_one_line(cost_result, capsys):
    out, _ = cost_result
    assert cli.main(["bench-cost", "--backbones", "cvtgan", "--out", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["bench-cost", "--steps", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--steps 0" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_compiled_training_forward_gives_the_eager_gradients():
    """torch.compile works with the PEFT layers and the lean frozen functions (minutes on a CPU)."""
    import copy

    import torch

    from PETITELib.backbones import build_backbone
    from PETITELib.engine.jobs import generator_forward
    from PETITELib.peft import apply_peft, trainable_parameters

    torch.manual_seed(0)
    model = build_backbone("cvtgan", "cpu")
    apply_peft(model, "enc=vpt+dec=lora+bitfit")  # the paper's mix: prompts, LoRA, biases
    with torch.no_grad():
        for parameter in trainable_parameters(model).values():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model.train()
    twin = copy.deepcopy(model)
    x, y = torch.rand(1, 1, 64, 64, 64), torch.rand(1, 1, 64, 64, 64)
    grads = []
    for network, forward in ((model, model), (twin, generator_forward(twin, compile=True))):
        torch.nn.functional.l1_loss(forward(x), y).backward()
        grads.append({n: p.grad for n, p in trainable_parameters(network).items()})
    assert set(grads[0]) == set(grads[1])
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-3, atol=1e-6)
