"""PaNET techniques and the probe from what a NeXus file says about itself (pure; no h5py).

Three hints, strongest first: the application definition (``/entry/definition``, or a canSAS
``SASentry`` group, which is NXcanSAS), an acronym in the instrument's name that PaNET lists as
a synonym (``SANS at SINQ``, ``APS USAXS at 9-ID-C``), and the probe of the source (NXsource
``probe``, canSAS ``radiation``, or its ``type`` such as "Spallation Neutron Source"). The probe
narrows a generic term (small angle scattering with neutrons is SANS); with no other hint the
probe's own PaNET term ("neutron probe") is the technique.
"""

from __future__ import annotations

import re

from . import panet

DEFINITIONS = {
    "NXmx": "PaNET01164",  # macromolecular crystallography
    "NXcanSAS": "PaNET01124",  # small angle scattering
    "NXsas": "PaNET01124",
    "NXsastof": "PaNET01277",  # time of flight SANS
    "NXtofraw": "PaNET01001",  # neutron time of flight technique
    "NXtofnpraw": "PaNET01001",
    "NXtofsingle": "PaNET01001",
    "NXdirecttof": "PaNET01244",  # time-of-flight spectrometry
    "NXindirecttof": "PaNET01244",
    "NXspe": "PaNET01245",  # inelastic neutron spectroscopy
    "NXsqom": "PaNET01245",
    "NXtas": "PaNET01245",
    "NXrefscan": "PaNET01121",  # reflectometry
    "NXreftof": "PaNET01239",  # neutron reflectometry
    "NXtomo": "PaNET01129",  # tomography
    "NXtomoproc": "PaNET01129",
    "NXtomophase": "PaNET01116",  # phase contrast imaging
    "NXxas": "PaNET01196",  # x-ray absorption spectroscopy
    "NXxasproc": "PaNET01196",
    "NXfluo": "PaNET01177",  # x-ray fluorescence
    "NXmonopd": "PaNET01030",  # powder diffraction
    "NXxrot": "PaNET01082",  # crystallography
    "NXxbase": "PaNET01216",  # x-ray diffraction
    "NXxeuler": "PaNET01216",
    "NXxkappa": "PaNET01216",
    "NXxnb": "PaNET01216",
    "NXxlaue": "PaNET01216",
    "NXlauetof": "PaNET01217",  # neutron diffraction
    "NXarpes": "PaNET01089",  # angle resolved photoemission spectroscopy
    "NXstxm": "PaNET01285",  # x-ray imaging
}
_DEFINITIONS_LOWER = {k.lower(): v for k, v in DEFINITIONS.items()}
NARROWER_BY_PROBE = {
    ("PaNET01124", "neutron"): "PaNET01189",  # SANS
    ("PaNET01124", "x-ray"): "PaNET01188",  # SAXS
    ("PaNET01121", "neutron"): "PaNET01239",
    ("PaNET01129", "x-ray"): "PaNET01207",
    ("PaNET01030", "neutron"): "PaNET01100",
    ("PaNET01030", "x-ray"): "PaNET01101",
}
PROBE_TERMS = {"neutron": "PaNET00101", "x-ray": "PaNET00100", "muon": "PaNET00102"}
_PROBES = (  # (probe, words in a source's probe/radiation/type text), checked in order
    ("muon", ("muon",)),
    ("neutron", ("neutron", "spallation", "reactor")),
    ("x-ray", ("x-ray", "xray", "x ray", "synchrotron", "free-electron", "free electron", "undulator")),
    ("electron", ("electron",)),
)
_ACRONYM = re.compile(r"\b[A-Z]{3,8}\b")


def probe_of(*texts: str | None) -> str:
    """'neutron', 'x-ray', 'muon', 'electron' from source descriptions, or ''."""
    for text in texts:
        lowered = (text or "").lower()
        for probe, words in _PROBES:
            if any(w in lowered for w in words):
                return probe
    return ""


def from_definition(definition: str | None) -> str | None:
    return _DEFINITIONS_LOWER.get((definition or "").strip().lower())


def from_instrument(name: str | None) -> list[str]:
    """PaNET terms whose synonym is an acronym in the instrument's name ("SANS at SINQ")."""
    found = []
    for word in _ACRONYM.findall(name or ""):
        term = panet.lookup(word)
        if term and panet.label(term) and word.lower() in {s.lower() for s in panet.terms()[term].synonyms}:
            found.append(term)
    return list(dict.fromkeys(found))


def techniques(definitions: list[str], instrument: str | None, probe: str) -> list[str]:
    """PaNET ids for a file, most specific first; [] when the file gives no hint."""
    found = [t for t in (from_definition(d) for d in definitions) if t]
    found += from_instrument(instrument)
    found = [NARROWER_BY_PROBE.get((t, probe), t) for t in found]
    # a term whose narrower term is also found adds nothing
    found = [t for t in dict.fromkeys(found) if not any(t != o and t in _broader(o) for o in found)]
    if not found and probe in PROBE_TERMS:
        found = [PROBE_TERMS[probe]]
    return found


def _broader(term: str) -> set[str]:
    out, todo = set(), [term]
    while todo:
        t = panet.terms().get(todo.pop())
        for parent in t.parents if t else ():
            if parent not in out:
                out.add(parent)
                todo.append(parent)
    return out


# The scientific field a technique implies, for the search facet: deliberately coarse, and only
# where the technique says it (macromolecular crystallography is structural biology). A term
# matches through its broader PaNET terms; the first row that matches wins; else "".
FIELDS = (
    ("PaNET01164", "Structural biology"),  # macromolecular crystallography
    ("PaNET01037", "Materials and soft matter"),  # small angle scattering (low momentum transfer)
    ("PaNET01245", "Condensed matter physics"),  # inelastic neutron spectroscopy
    ("PaNET01244", "Condensed matter physics"),  # time-of-flight spectrometry
    ("PaNET01089", "Condensed matter physics"),  # angle resolved photoemission
    ("PaNET01030", "Materials science"),  # powder diffraction
    ("PaNET01196", "Chemistry"),  # x-ray absorption spectroscopy
)
# application definitions of reduced data; the others describe measurements (raw)
PROCESSED = {"nxcansas", "nxspe", "nxsqom", "nxtomoproc", "nxxasproc", "nxiqproc", "nxrefscan"}


def scientific_field(terms: list[str]) -> str:
    """The field the file's techniques imply (FIELDS), or '' when they do not say."""
    for key, name in FIELDS:
        if any(t == key or key in _broader(t) for t in terms):
            return name
    return ""


def data_type(definitions: list[str], *, measured: bool, reduced: bool) -> str:
    """'raw' or 'processed' (models.DATA_TYPES) from the application definition, else from what
    the entry holds: an NXprocess group (reduced), a detector in an instrument (measured)."""
    names = [d.strip().lower() for d in definitions if d.strip()]
    if names:
        return "processed" if any(n in PROCESSED for n in names) else "raw"
    if reduced:
        return "processed"
    return "raw" if measured else ""
