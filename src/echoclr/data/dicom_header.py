"""A DICOM file's header, read without its pixel data, and what it says about the object: the
one rule for what is a cine (ingest, predict and scan skip the rest with this reason), the
kinds of ultrasound regions it holds, and any view its header names.

Reading stops at the pixel data element (``stop_before_pixels``); where that element starts is
kept, so frames can later be read from the file one at a time.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

import pydicom
import pydicom.datadict
import pydicom.uid

DICOM_SUFFIXES = (".dcm", ".dicom")
PIXEL_TAGS = {(0x7FE0, 0x0010): "PixelData", (0x7FE0, 0x0008): "FloatPixelData",
              (0x7FE0, 0x0009): "DoubleFloatPixelData"}
SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."  # every structured report storage class
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR
META = b"DICM\x02\x00"  # the preamble's magic, then a file meta element's group (0002)
# RegionDataType (PS3.3 C.8.5.5.1.2) → kind; RegionSpatialFormat 2 is M-mode, 3 spectral.
DATA_TYPE_KINDS = {1: "2d", 2: "colour", 3: "doppler", 4: "doppler"}
KIND_ORDER = ("2d", "colour", "doppler", "m-mode")
VIEW_WORDS = ("PLAX", "PSAX", "A2C", "A3C", "A4C", "A5C", "SAX", "LAX", "SUBCOSTAL", "SUBXIPHOID",
              "SSN", "SUPRASTERNAL", "APICAL", "PARASTERNAL")


@dataclass
class DicomHeader:
    """The header (no pixel data) and where the pixel data element's value lies in the file:
    ``pixel_offset`` (bytes from the file start; None: no pixel data) and ``pixel_length``
    (bytes; 0xFFFFFFFF for encapsulated data of undefined length)."""

    ds: pydicom.Dataset
    pixel_offset: int | None
    pixel_length: int | None
    pixel_keyword: str = "PixelData"
    pixel_vr: str | None = None
    damage: str | None = None  # what failed in a truncated or corrupt file; None: it parsed

    @property
    def n_frames(self) -> int:
        return int(self.ds.get("NumberOfFrames", 1) or 1)

    @property
    def syntax(self) -> pydicom.uid.UID:
        return self.ds.file_meta.get("TransferSyntaxUID", pydicom.uid.ExplicitVRLittleEndian)


def is_dicom(path: str | os.PathLike) -> bool:
    """True for a file with the DICOM "DICM" preamble, or any file ending in .dcm/.dicom."""
    with open(path, "rb") as f:
        f.seek(128)
        if f.read(4) == b"DICM":
            return True
    return os.path.splitext(path)[1].lower() in DICOM_SUFFIXES


def read_header(path: str | os.PathLike) -> DicomHeader:
    """Every element before the pixel data, and the pixel data's position; a DICOM file cut
    short or unparsable after its preamble comes back with ``damage`` saying what failed.

    Raises:
        Exception: whatever pydicom raises for a file it cannot parse, where no read came up
            short (a file with no DICOM structure to speak of).
    """
    try:
        header = _read_header(path)
    except Exception:
        damage = _damage(path)
        if damage is None:
            raise
        ds = pydicom.Dataset()
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        return DicomHeader(ds, None, None, damage=damage)
    if header.pixel_offset is None:  # the header ended without pixel data: cut short?
        header.damage = _damage(path)
    return header


def _read_header(path: str | os.PathLike) -> DicomHeader:
    with open(path, "rb") as f:
        ds = pydicom.dcmread(f, force=True, stop_before_pixels=True)
        if not hasattr(ds, "file_meta"):
            ds.file_meta = pydicom.dataset.FileMetaDataset()
        implicit, little = ds.original_encoding
        if implicit is None:  # nothing was read after the file meta: no dataset, no pixels
            return DicomHeader(ds, None, None)
        start = f.tell()
        head = f.read(8)
        if len(head) < 8:
            return DicomHeader(ds, None, None)
        order = "<" if little else ">"
        group, element = struct.unpack(f"{order}HH", head[:4])
        keyword = PIXEL_TAGS.get((group, element))
        if keyword is None:
            return DicomHeader(ds, None, None)
        if implicit:
            return DicomHeader(ds, start + 8, struct.unpack(f"{order}L", head[4:])[0], keyword)
        vr = head[4:6].decode("ascii", "replace")
        length = struct.unpack(f"{order}L", f.read(4))[0]
        return DicomHeader(ds, start + 12, length, keyword, vr)


def _damage(path: str | os.PathLike) -> str | None:
    """What failed in a DICOM file cut short or unparsable, found by reading its header again
    and watching for a read the file cannot fill (only files without pixel data, or that
    pydicom cannot parse, pay for this); None for an intact file or no DICOM at all."""
    with open(path, "rb") as raw:
        f = _ShortReads(raw)
        try:
            ds = pydicom.dcmread(f, force=True, stop_before_pixels=True)
            dicom = bool(ds.preamble or getattr(ds, "file_meta", None) or "SOPClassUID" in ds)
        except Exception:  # noqa: BLE001 -- pydicom gave up: a cut, if a read came up short
            dicom = _starts(raw, b"DICM")
        if f.short is None or not dicom:
            return None
        return f.damage(os.fstat(raw.fileno()).st_size, _starts(raw, META))


def _starts(f, prefix: bytes) -> bool:
    """Whether ``prefix`` follows the 128-byte preamble."""
    f.seek(128)
    return f.read(len(prefix)) == prefix


class _ShortReads:
    """A file that notes the first read it could not fill: pydicom takes a value cut short by
    the end of the file as it comes, so this is how a truncated header shows."""

    def __init__(self, f):
        self._f = f
        self.short: tuple[int, int, int] | None = None  # (at byte, bytes wanted, bytes got)
        self._header: tuple[int, bytes] = (-1, b"")  # (end, bytes) of the last element header

    def read(self, n: int = -1) -> bytes:
        at = self._f.tell()
        data = self._f.read(n)
        if n is None or n < 0 or self.short is not None:
            return data
        if len(data) == 8:
            self._header = (at + 8, data)
        # an 8-byte read that finds nothing is pydicom looking for one more element at the end
        # of the file: a clean end; any other read that comes back short is a cut
        elif len(data) < n and (data or n != 8):
            self.short = (at, n, len(data))
        return data

    def __getattr__(self, name: str):
        return getattr(self._f, name)

    def damage(self, size: int, meta: bool) -> str:
        """What failed, in words, for a file of ``size`` bytes (``meta``: its file meta
        information, group 0002, was read)."""
        at, wanted, got = self.short
        if size <= 132:
            return "nothing follows the DICM preamble"
        if not meta:
            return (f"the bytes after the DICM preamble do not parse as DICOM (no file meta "
                    f"information, group 0002; a read of {wanted:,} bytes at byte {at:,} of a "
                    f"{size:,}-byte file)")
        end, header = self._header
        if at in (end, end + 4):  # the value (or 32-bit length) of the element just read
            group, element = struct.unpack("<HH", header[:4])
            name = pydicom.datadict.keyword_for_tag((group << 16) | element) or "element"
            return (f"the dataset ends early: ({group:04X},{element:04X}) {name} at byte "
                    f"{at:,} needs {wanted:,} bytes, the file holds {got:,} more")
        return (f"the dataset ends early: the file ends {got} bytes into an element's header at "
                f"byte {at:,}")


def not_an_image(header: DicomHeader) -> str | None:
    """Why this object holds no image (a corrupt or truncated file, a DICOMDIR, a structured
    report, no pixel data), or None."""
    ds = header.ds
    if header.damage:
        return f"corrupt or truncated DICOM: {header.damage}"
    sop = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    if sop == MEDIA_DIRECTORY or "DirectoryRecordSequence" in ds:
        return "DICOMDIR (an index of the media), not an image"
    if sop.startswith(SR_CLASS_PREFIX) or str(ds.get("Modality", "")).strip().upper() == "SR":
        return "DICOM structured report, not an image"
    if header.pixel_offset is None:
        if not ds.preamble and not sop:
            return "not a DICOM file (no DICM preamble, no pixel data)"
        return "DICOM has no pixel data (not an image)"
    return None


def not_a_cine(header: DicomHeader) -> str | None:
    """Why this object is not an ultrasound cine to learn from (not an image, another modality,
    a single-frame still), or None for a cine: the rule ingest, predict and scan apply."""
    modality = str(header.ds.get("Modality", "") or "").strip().upper()
    if reason := not_an_image(header):
        return reason
    if modality and modality != "US":
        return f"modality {modality}, not ultrasound"
    if header.n_frames < 2:
        return "single-frame still, not a cine"
    return None


def cine_skip_reason(path: str | os.PathLike) -> str | None:
    """:func:`not_a_cine` of a DICOM file; None for other files and for files whose header
    cannot be read (decoding them says why)."""
    try:
        if not is_dicom(path):
            return None
        return not_a_cine(read_header(path))
    except Exception:  # unreadable: the decode reports it with its reason
        return None


def us_regions(ds: pydicom.Dataset) -> str:
    """The kinds of the ultrasound regions, e.g. "2d", "2d+colour", "2d+doppler"; "" when the
    header has no SequenceOfUltrasoundRegions."""
    kinds = set()
    for region in ds.get("SequenceOfUltrasoundRegions", []):
        spatial, data = (int(region.get(k, 0) or 0) for k in ("RegionSpatialFormat",
                                                                 "RegionDataType"))
        if spatial == 2:
            kinds.add("m-mode")
        elif spatial == 3:
            kinds.add("doppler")
        elif data in DATA_TYPE_KINDS and (spatial == 1 or data != 1):
            kinds.add(DATA_TYPE_KINDS[data])
    return "+".join(k for k in KIND_ORDER if k in kinds)


def view_hint(ds: pydicom.Dataset) -> str:
    """The view a header names, as written: ViewCodeSequence's code meaning, else the first
    known view word (PLAX, A4C …) in SeriesDescription or ProtocolName; "" when none."""
    for item in ds.get("ViewCodeSequence", []):
        meaning = str(item.get("CodeMeaning", "") or "").strip()
        if meaning:
            return meaning
    for keyword in ("SeriesDescription", "ProtocolName"):
        words = re.findall(r"[A-Za-z0-9]+", str(ds.get(keyword, "") or ""))
        for word in words:
            if word.upper() in VIEW_WORDS:
                return word.upper()
    return ""
