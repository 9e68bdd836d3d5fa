"""Body-weight SUV from DICOM tags: hand-computed cases, and every missing tag named."""
import numpy as np
import pytest
from dicom_support import edit_file, write_series
from phantom_head import affine_for, short_and_long
from pydicom.dataset import Dataset

from PETITELib.dicom import read_series, suv_factor
from PETITELib.dicom.suv import body_weight_suv_factor, suv_inputs
from PETITELib.errors import PetiteError

# By hand: F-18 half-life 109.77 min = 6586.2 s; one hour (3600 s) from injection to the series
# start decays the dose by 2^(-3600/6586.2) = 2^(-0.546598) = 0.684633, so 370 MBq -> 253.314 MBq;
# SUV per Bq/mL = 70 kg * 1000 g/kg / 253.314e6 Bq = 2.76337e-4 (1 Bq/mL -> SUV 0.000276337).
START_FACTOR = 2.76337e-4
# Decay Correction ADMIN (images decay-corrected to the injection): 70000 / 370e6 = 1.891892e-4.
ADMIN_FACTOR = 1.891892e-4


def pet_header(**changes) -> Dataset:
    """The SUV-relevant header of a PET image: 70 kg, 370 MBq F-18 at 10:00, series at 11:00."""
    item = Dataset()
    item.RadionuclideTotalDose = "370000000"
    item.RadionuclideHalfLife = "6586.2"
    item.RadiopharmaceuticalStartDateTime = "20240115100000.000000"
    dataset = Dataset()
    dataset.PatientWeight = "70"
    dataset.RadiopharmaceuticalInformationSequence = [item]
    dataset.SeriesDate, dataset.SeriesTime = "20240115", "110000"
    dataset.DecayCorrection, dataset.Units = "START", "BQML"
    for keyword, value in changes.items():
        target = item if keyword.startswith("Radio") and keyword != "RadiopharmaceuticalInformationSequence" \
            else dataset
        if value is None:
            delattr(target, keyword)
        else:
            setattr(target, keyword, value)
    return dataset


def test_start_decay_correction_one_hour_after_injection():
    inputs = suv_inputs(pet_header())
    assert inputs.decay_seconds == 3600.0 and inputs.weight_kg == 70.0 and inputs.dose_bq == 370e6
    assert suv_factor(pet_header()) == pytest.approx(START_FACTOR, rel=2e-6)
    assert body_weight_suv_factor(70.0, 370e6, 6586.2, 3600.0) == pytest.approx(START_FACTOR, rel=2e-6)


def test_admin_decay_correction_uses_the_undecayed_dose():
    assert suv_factor(pet_header(DecayCorrection="ADMIN")) == pytest.approx(ADMIN_FACTOR, rel=1e-6)


def test_start_time_without_date_and_an_injection_before_midnight():
    same_day = pet_header(RadiopharmaceuticalStartDateTime=None, RadiopharmaceuticalStartTime="100000")
    assert suv_factor(same_day) == pytest.approx(START_FACTOR, rel=2e-6)
    # injected 23:30 the day before a series that starts at 00:30: still one hour of decay
    overnight = pet_header(RadiopharmaceuticalStartDateTime=None, RadiopharmaceuticalStartTime="233000",
                           SeriesTime="003000")
    assert suv_inputs(overnight).decay_seconds == 3600.0


def test_two_half_lives_quarter_the_dose():
    # 2 x 6586.2 s after injection: D = 370 MBq / 4 = 92.5 MBq; 70000 g / 92.5e6 Bq = 7.567568e-4
    header = pet_header(SeriesTime="133932.4")  # 10:00:00 + 13172.4 s = 13:39:32.4
    assert suv_factor(header) == pytest.approx(7.567568e-4, rel=1e-6)


@pytest.mark.parametrize("change, named", [
    ({"PatientWeight": None}, "Patient's Weight (0010,1030)"),
    ({"PatientWeight": "0"}, "Patient's Weight (0010,1030) is 0"),
    ({"RadiopharmaceuticalInformationSequence": None}, "Radiopharmaceutical Information Sequence (0054,0016)"),
    ({"RadionuclideTotalDose": None}, "Radionuclide Total Dose (0018,1074)"),
    ({"RadionuclideHalfLife": None}, "Radionuclide Half Life (0018,1075)"),
    ({"RadiopharmaceuticalStartDateTime": None}, "Radiopharmaceutical Start DateTime (0018,1078)"),
    ({"SeriesTime": None}, "Series Time (0008,0031)"),
    ({"SeriesDate": None}, "Series Date (0008,0021)"),
    ({"DecayCorrection": None}, "Decay Correction (0054,1102)"),
    ({"DecayCorrection": "NONE"}, "Decay Correction (0054,1102) is NONE"),
    ({"RadiopharmaceuticalStartDateTime": "20240115120000"}, "is after the series start"),
])
def test_what_suv_lacks_is_named(change, named):
    with pytest.raises(PetiteError) as error:
        suv_factor(pet_header(**change), "scan/IM_0001.dcm")
    message = str(error.value)
    assert message.startswith("scan/IM_0001.dcm: ") and named in message and "\n" not in message


def test_reading_a_series_in_suv(tmp_path):
    short, _, _ = short_and_long((16, 14, 8), seed=1)
    folder = write_series(tmp_path / "pet", short, affine_for())
    native, suv = read_series(folder), read_series(folder, units="suv")
    assert native.units == "BQML" and suv.units == "GML"
    assert suv.suv_factor == pytest.approx(START_FACTOR, rel=2e-6)
    np.testing.assert_allclose(suv.array, native.array * suv.suv_factor, rtol=1e-6)
    # a series already in SUV (GML) is read as it is
    for path in folder.iterdir():
        edit_file(path, Units="GML")
    np.testing.assert_array_equal(read_series(folder, units="suv").array, native.array)


def test_philips_counts_use_the_per_slice_suv_scale_factor(tmp_path):
    short, _, _ = short_and_long((16, 14, 4), seed=2)
    folder = write_series(tmp_path / "pet", short, affine_for())
    files = sorted(folder.iterdir())
    import pydicom

    for index, path in enumerate(files):
        dataset = pydicom.dcmread(str(path))
        dataset.Units = "CNTS"
        dataset.private_block(0x7053, "Philips PET Private Group", create=True).add_new(0x00, "DS",
                                                                                         f"{0.001 * (index + 1)}")
        dataset.save_as(str(path), enforce_file_format=True)
    native, suv = read_series(folder), read_series(folder, units="suv")
    assert native.units == "CNTS"
    for k in range(4):
        np.testing.assert_allclose(suv.array[:, :, k], native.array[:, :, k] * 0.001 * (k + 1), rtol=1e-6)
    dataset = pydicom.dcmread(str(files[2]))
    del dataset[0x7053, 0x1000]
    dataset.save_as(str(files[2]), enforce_file_format=True)
    with pytest.raises(PetiteError, match=r"IM_0003.dcm: Units CNTS without Philips' SUV Scale Factor \(7053,1000\)"):
        read_series(folder, units="suv")
