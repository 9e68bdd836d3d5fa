"""PETITELib.scanner_matching: Table-4 scanners and adapter profiles matched by grid and DICOM names."""
import pytest

from PETITELib.data.scanners import SCANNERS
from PETITELib.scanner_matching import (ScannerProfile, best_match, describe_scanner, detect_scanner, match_score,
                                        scanner_profile, table4_profile)

TABLE4 = [(table4_profile(scanner), scanner.id) for scanner in SCANNERS.values()]
GEMINI = ScannerProfile(matrix=(128, 128, 90), spacing=(2.0, 2.0, 2.0), manufacturer="Philips Healthcare")
BIDS_GE = scanner_profile({"Manufacturer": "GE MEDICAL SYSTEMS", "ManufacturersModelName": "Discovery MI"})


@pytest.mark.parametrize("scanner_id", sorted(SCANNERS))
def test_each_table4_scanner_matches_itself_only(scanner_id):
    scanner = SCANNERS[scanner_id]
    assert detect_scanner(scanner.matrix, scanner.spacing) is scanner
    assert best_match(TABLE4, scanner.matrix, scanner.spacing) == scanner_id
    scores = {other: match_score(profile, scanner.matrix, scanner.spacing) for profile, other in TABLE4}
    assert scores == {other: 2 if other == scanner_id else None for other in SCANNERS}


def test_a_2mm_128x128x90_volume_is_scanner_4_within_the_spacing_tolerance():
    assert detect_scanner((128, 128, 90), (2.0, 2.0, 2.0)) is SCANNERS[4]
    assert detect_scanner([128, 128, 90], (2.0, 2.0, 2.0004)) is SCANNERS[4]
    assert detect_scanner((128, 128, 90), (2.0, 2.0, 2.01)) is None
    assert detect_scanner((128, 128, 91), (2.0, 2.0, 2.0)) is None


def test_an_unknown_geometry_matches_no_table4_scanner():
    assert detect_scanner((64, 64, 64), (3.0, 3.0, 3.0)) is None
    assert detect_scanner((64, 64, 64), (3.0, 3.0, 3.0), {"manufacturer": "Siemens"}) is None  # names alone: no
    assert {match_score(profile, (64, 64, 64), (3.0, 3.0, 3.0)) for profile, _ in TABLE4} == {None}


def test_dicom_manufacturer_confirms_or_rules_out_the_grid():
    grid = (128, 128, 90), (2.0, 2.0, 2.0)
    assert match_score(GEMINI, *grid, {"manufacturer": "Philips Medical Systems"}) == 3  # first word compared
    assert match_score(GEMINI, *grid, {"manufacturer": "PHILIPS"}) == 3
    assert match_score(GEMINI, *grid, {"manufacturer": "SIEMENS"}) is None
    assert detect_scanner(*grid, {"manufacturer": "Philips", "model": "GEMINI TF"}) is SCANNERS[4]  # model unknown
    assert detect_scanner(*grid, {"manufacturer": "SIEMENS", "model": "Biograph"}) is None


def test_adapter_profiles_from_bids_names_match_by_dicom_manufacturer_and_model():
    grid = (64, 64, 64), (3.0, 3.0, 3.0)
    assert match_score(BIDS_GE, *grid) == 0  # nothing disagrees, nothing confirms
    assert best_match([(BIDS_GE, "ge")], *grid) is None  # so auto never picks it
    assert match_score(BIDS_GE, *grid, {"manufacturer": "GE Healthcare", "model": "discovery mi"}) == 2
    assert best_match([(BIDS_GE, "ge")], *grid, {"manufacturer": "GE Healthcare", "model": "Discovery MI"}) == "ge"
    assert match_score(BIDS_GE, *grid, {"manufacturer": "GE Healthcare", "model": "Discovery 690"}) is None
    assert match_score(BIDS_GE, *grid, {"manufacturer": "Philips"}) is None


def test_best_match_prefers_more_evidence_and_breaks_ties_by_order():
    grid = (128, 128, 90), (2.0, 2.0, 2.0)
    grid_only = ScannerProfile(matrix=grid[0], spacing=grid[1])
    named = ScannerProfile(matrix=grid[0], spacing=grid[1], manufacturer="Philips", model="Gemini TF")
    dicom = {"manufacturer": "Philips Medical Systems", "model": "GEMINI TF"}
    assert best_match([(grid_only, "grid"), (named, "named")], *grid, dicom) == "named"
    assert best_match([(grid_only, "first"), (grid_only, "second")], *grid) == "first"
    ge_dicom = {"manufacturer": "GE Healthcare"}
    assert best_match([(GEMINI, "gemini"), (BIDS_GE, "ge")], *grid, ge_dicom) == "ge"  # the grid's vendor differs
    assert best_match([(GEMINI, "gemini")], *grid, ge_dicom) is None
    assert best_match([], *grid) is None


def test_scanner_profiles_from_descriptions():
    simulated = scanner_profile({"generator": "petite simulate", "scanner": SCANNERS[4].to_json()})
    assert simulated == ScannerProfile(4, (128, 128, 90), (2.0, 2.0, 2.0), "Philips Healthcare")
    assert simulated == table4_profile(SCANNERS[4]) == scanner_profile({"id": 4})
    assert BIDS_GE == ScannerProfile(manufacturer="GE MEDICAL SYSTEMS", model="Discovery MI")
    explicit = scanner_profile({"matrix": [40, 36, 30], "spacing": [2.5, 2.5, 3], "manufacturer": " Siemens "})
    assert explicit == ScannerProfile(None, (40, 36, 30), (2.5, 2.5, 3.0), "Siemens")
    assert scanner_profile({"id": 4, "manufacturer": "Philips"}).manufacturer == "Philips"  # given names win
    assert scanner_profile({"id": 9}) == scanner_profile(None) == scanner_profile({}) == ScannerProfile()


def test_describe_scanner():
    assert describe_scanner(table4_profile(SCANNERS[4])) == "scanner 4, Philips Healthcare, 128x128x90 at 2x2x2 mm"
    assert describe_scanner(table4_profile(SCANNERS[5])) == "scanner 5, Siemens, 128x128x63 at 2.05941x2.05941x2.425 mm"
    assert describe_scanner(BIDS_GE) == "GE MEDICAL SYSTEMS Discovery MI"
    assert describe_scanner(ScannerProfile(matrix=(40, 36, 30), spacing=(2.5, 2.5, 3.0))) == "40x36x30 at 2.5x2.5x3 mm"
    assert describe_scanner(ScannerProfile()) == "unknown scanner"


def test_a_simulated_cohorts_model_description_is_not_a_model_name():
    from PETITELib.scanner_matching import describe_scanner, scanner_profile

    profile = scanner_profile({"id": 4, "manufacturer": "Philips Healthcare",
                               "model": {"physics": "how the scans were simulated"},
                               "matrix": [128, 128, 90], "spacing": [2.0, 2.0, 2.0]})
    assert profile.model == ""
    assert describe_scanner(profile) == "scanner 4, Philips Healthcare, 128x128x90 at 2x2x2 mm"
