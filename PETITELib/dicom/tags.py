"""Naming DICOM attributes in messages: ``Patient's Weight (0010,1030)``."""
from __future__ import annotations


def tag_name(keyword: str) -> str:
    """The DICOM dictionary's name and tag of ``keyword``, e.g. ``Patient's Weight (0010,1030)``."""
    from pydicom.datadict import dictionary_description, tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{dictionary_description(tag)} ({tag >> 16:04X},{tag & 0xFFFF:04X})"
