"""The server's workflow: FedAvg over adapter tensors, best global round by validation PSNR.

:class:`PetiteFedAvg` is a FLARE FedAvg controller (built on FLARE's ``BaseFedAvg``, whose
aggregation weights each result by its ``NUM_STEPS_CURRENT_ROUND``: here the site's training
crops). Round r = 0 .. rounds-1 sends the global adapter to every site with a ``train`` task;
each site first validates that adapter on its own validation subjects, then trains it for one
round and sends back its adapter tensors; the server averages them into the next global
adapter. A final ``validate`` task scores the last global adapter. So every global adapter -
the initial one (round 0: the base alone for the spec's identity-initialised methods) up to the
one after the last round - is scored by the sites' mean validation PSNR, and the best is kept.

The persistor (:mod:`.persistor`) writes the best global adapter so far whenever it improves
(``complete`` False) and once more at the end with the whole history (``complete`` True).
"""
from __future__ import annotations

import copy
from typing import Dict, List

import numpy as np
from nvflare.app_common.abstract.fl_model import FLModel
from nvflare.app_common.workflows.base_fedavg import BaseFedAvg

TRAIN_TASK = "train"
VALIDATE_TASK = "validate"
SCANNER_KEY = "petite_scanner"
SUMMARY_KEY = "petite_federation"


def _site(result: FLModel) -> str:
    return str((result.meta or {}).get("client_name", "?"))


def _crops(result: FLModel) -> int:
    from nvflare.apis.fl_constant import FLMetaKey

    return int((result.meta or {}).get(FLMetaKey.NUM_STEPS_CURRENT_ROUND, 0))


def round_record(index: int, results: List[FLModel]) -> dict:
    """One round's record: the global adapter sent in round ``index`` as scored by each site
    (``val_*`` metrics, training loss and crops when it trained) and the sites' mean metrics."""
    sites = {}
    for result in sorted(results, key=_site):
        metrics = {k: float(v) for k, v in (result.metrics or {}).items()}
        sites[_site(result)] = {**metrics, **({"crops": _crops(result)} if result.params else {})}
    val_keys = sorted({k for s in sites.values() for k in s if k.startswith("val_")})
    mean = {k[len("val_"):]: float(np.mean([s[k] for s in sites.values()])) for k in val_keys}
    return {"round": index, "val_metrics": mean, "sites": sites}


class PetiteFedAvg(BaseFedAvg):
    """FedAvg over PETITE adapter tensors with the best global round kept (see the module docstring).

    num_rounds: training rounds; persistor_id: the job's :class:`~.persistor.AdapterPersistor`.
    """

    def __init__(self, num_rounds: int = 5, persistor_id: str = "persistor"):
        super().__init__(num_rounds=num_rounds, persistor_id=persistor_id)

    def run(self) -> None:
        model = self.load_model()
        model.start_round, model.total_rounds = 0, self.num_rounds
        history: List[dict] = []
        scanners: Dict[str, dict] = {}
        best = None
        for index in range(self.num_rounds + 1):
            self.current_round = index
            model.current_round = index
            task = TRAIN_TASK if index < self.num_rounds else VALIDATE_TASK
            self.info(f"PETITE round {index}: {task} task to every site")
            results = self.send_model_and_wait(task_name=task, data=model)
            if self.abort_signal.triggered:
                return
            for result in results:
                if SCANNER_KEY in (result.meta or {}):
                    scanners[_site(result)] = result.meta[SCANNER_KEY]
            record = round_record(index, results)
            history.append(record)
            psnr = record["val_metrics"].get("psnr", float("-inf"))
            self.info(f"PETITE round {index}: global adapter after {index} round(s) scores "
                      f"{psnr:.3f} dB mean validation PSNR over {len(results)} site(s)")
            if best is None or psnr > best["val_metrics"]["psnr"]:
                best = {"params": copy.deepcopy(model.params), "round": index, "val_metrics": record["val_metrics"]}
                self.save_model(self._summary(best, history, scanners, complete=False))
            if task == TRAIN_TASK:
                model = self.update_model(model, self.aggregate(sorted(results, key=_site)))  # fixed order
        self.save_model(self._summary(best, history, scanners, complete=True))

    def _summary(self, best: dict, history: List[dict], scanners: Dict[str, dict], complete: bool) -> FLModel:
        """The best global adapter with what the persistor records about the federation."""
        summary = {"best_round": best["round"], "val_metrics": best["val_metrics"], "rounds": self.num_rounds,
                   "sites": sorted(scanners), "scanners": scanners, "history": history, "complete": complete}
        return FLModel(params=best["params"], meta={SUMMARY_KEY: summary})
