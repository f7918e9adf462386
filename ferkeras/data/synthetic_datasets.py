"""Old import path of :mod:`ferkeras.data.synthetic.formats` (synthetic datasets in each real dataset's format).

Kept so that ``from ferkeras.data.synthetic_datasets import ...`` in existing scripts keeps working; new code
imports :mod:`ferkeras.data.synthetic.formats`.
"""

from ferkeras.data.synthetic.formats import (  # noqa: F401
    BAD_LANDMARKS, BAD_ROW_KINDS, CORRUPT_IMAGE, INVALID_LABEL, MISSING_IMAGE, NAN_VALUE, TO_AFF_WILD2, TO_FER2013,
    TO_FERPLUS, TO_RAF_DB, WRITERS, BadRows, plan_bad_rows, write_aff_wild, write_aff_wild2, write_afew_va,
    write_affectnet, write_fer2013, write_ferplus, write_raf_db, write_synthetic, write_voxceleb1)

__all__ = ("BAD_LANDMARKS", "BAD_ROW_KINDS", "BadRows", "CORRUPT_IMAGE", "INVALID_LABEL", "MISSING_IMAGE", "NAN_VALUE",
           "TO_AFF_WILD2", "TO_FER2013", "TO_FERPLUS", "TO_RAF_DB", "WRITERS", "plan_bad_rows", "write_aff_wild",
           "write_aff_wild2", "write_afew_va", "write_affectnet", "write_fer2013", "write_ferplus", "write_raf_db",
           "write_synthetic", "write_voxceleb1")
