def add_parser(sub):
    p = sub.add_parser("generate", help="generate a synthetic dataset")
    p.set_defaults(func=lambda a: 0)
