"""The training and inference engine behind :mod:`PETITELib.api`.

Modules, one job each:
- ``devices``: device choice (auto/cpu/cuda/mps) and inference autocast;
- ``inference``: sliding-window whole-volume inference with Gaussian blending;
- ``reconstruction``: ``petite reconstruct`` on files (output, metrics, error maps, figure);
- ``models``: loading base models, adapters and fully fine-tuned models (via :mod:`PETITELib.peft`);
- ``settings``: training settings and their defaults per backbone, preset and method;
- ``initialization``: starting pre-training from the identity;
- ``schedule``, ``objectives``: learning-rate schedule; L1 and adversarial training steps;
- ``batches``: training crops per epoch and whole-volume validation;
- ``checkpoint``, ``training``: atomic per-epoch checkpoints and the resumable epoch loop;
- ``distributed``: several processes training together under ``torchrun`` (DistributedDataParallel);
- ``memory``: peak-memory measurement of a phase;
- ``jobs``, ``pretraining``, ``finetuning``: the ``pretrain`` and ``finetune`` jobs;
- ``evaluation``, ``tables``, ``reports``: scoring on cohorts, tables and plots;
- ``bench``: the end-to-end benchmark; ``demo``: the demonstration behind the README's first command;
- ``zoo_rebuild``, ``scanner_gap``: ``petite zoo rebuild`` (the shipped models from their recipe)
  and ``petite zoo gap`` (what the base loses on each target scanner), on the zoo's work folder.
"""
