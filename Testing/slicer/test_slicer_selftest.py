"""The module's own self-test (PETITETest, as Slicer runs it) on slicer-core, end to end on the sample
pair: reconstruct with auto, compare, one-epoch fine-tune on a tiny cohort, the new adapter listed.
Every step runs the real PETITELib in a `petite` process (no stub); the shipped zoo is in use."""
import pytest

from conftest import one_thread_launcher

pytestmark = pytest.mark.slicer  # about 40 s on 2 shared CPU cores: in the default run too


def test_module_self_test_runs_end_to_end(petite, scene, shipped_zoo):
    case = petite.PETITETest()
    assert case.LOGIC_TESTS == ("test_PETITE_ReconstructCompareFinetune",)
    case.setUp()
    case.test_PETITE_ReconstructCompareFinetune(processLauncher=one_thread_launcher(petite))
