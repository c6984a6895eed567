"""`retreg train` (placeholder until its issue lands)."""


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="(not implemented yet)")
    p.set_defaults(func=run)


def run(args) -> int:
    raise NotImplementedError("retreg train is not implemented yet")
