"""The physical scale prior of cfocta pairs (``core.field``) as command-line options, shared by
``register`` and ``evaluate``."""
from __future__ import annotations

from retreg.core.field import OCTA_FIELDS_MM, FieldPrior
from retreg.core.pipeline import RegistrationConfig


def add_field_args(p) -> None:
    p.add_argument("--octa-field-mm", type=float, choices=OCTA_FIELDS_MM, metavar="MM",
                   help="cfocta with a whole CF photo: the OCTA scan's side in mm (3, 6 or 12); "
                        "without it the usual 3 and 6 mm scans are tried")
    p.add_argument("--cf-fov-deg", type=float, default=45.0, metavar="DEG",
                   help="cfocta with a whole CF photo: the photo's field of view (default 45)")


def registration_config(args) -> RegistrationConfig:
    return RegistrationConfig(field=FieldPrior(args.octa_field_mm, args.cf_fov_deg))
