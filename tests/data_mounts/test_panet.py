"""PaNET ids: three spellings, labels from the shipped term list, hierarchy."""

from __future__ import annotations

import pytest

from panbinder.data_mounts import panet
from panbinder.errors import PanbinderError
from tests.shared_data import CATALOGUE

SHARED_TERMS = str(CATALOGUE / "panet" / "panet_terms.json")


@pytest.mark.parametrize(
    "spelling",
    [
        "PaNET01188",
        "http://purl.org/pan-science/PaNET/PaNET01188",
        "https://purl.org/pan-science/PaNET/PaNET01188",
        "  panet01188 ",
    ],
)
def test_spellings_normalise(spelling):
    assert panet.normalise_id(spelling) == "PaNET01188"
    assert panet.label(panet.normalise_id(spelling)) == "small angle x-ray scattering"


@pytest.mark.parametrize("bad", ["PaNET1", "01188", "http://example.org/PaNET01188", "", None, 1188])
def test_bad_ids_refused(bad):
    with pytest.raises(PanbinderError, match="not a PaNET technique id"):
        panet.normalise_id(bad)


def test_terms_loaded_from_package_copy():
    assert panet.TERMS_FILE.parent.name == "data_mounts"
    assert panet.TERMS_FILE.read_bytes() == open(SHARED_TERMS, "rb").read()
    terms = panet.terms()
    assert len(terms) == 377
    assert terms["PaNET00001"].parents == ()
    assert terms["PaNET01188"].synonyms == ("SAXS",)


def test_labels_with_stray_whitespace_are_collapsed():
    assert panet.label("PaNET01119") == "spin echo scattering"
    assert panet.label("PaNET01250") == "high-resolution neutron imaging"
    assert panet.label("PaNET99999") is None


def test_lookup_by_label_and_synonym():
    assert panet.lookup("SANS") == "PaNET01189"
    assert panet.lookup("small angle neutron scattering") == "PaNET01189"
    assert panet.lookup("reflectivity") == "PaNET01121"
    assert panet.lookup("https://purl.org/pan-science/PaNET/PaNET01121") == "PaNET01121"
    assert panet.lookup("diffraction") is None  # a name shared by two terms is not guessed
    assert panet.lookup("") is None and panet.lookup("no such technique") is None


def test_descendants_follow_the_dag():
    small_angle = panet.with_descendants("PaNET01124")
    assert {"PaNET01124", "PaNET01188", "PaNET01189"} <= small_angle
    assert "PaNET01121" not in small_angle
    assert len(panet.with_descendants("PaNET00001")) == 377
    assert panet.purl("PaNET01188") == "http://purl.org/pan-science/PaNET/PaNET01188"
