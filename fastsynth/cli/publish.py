"""fastsynth publish: validate a dataset folder and upload it to the Hugging Face Hub."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from .common import HelpFormatter
    p = sub.add_parser(
        "publish", help="upload a synthetic dataset folder to the Hugging Face Hub",
        formatter_class=HelpFormatter,
        description="Validates the folder (manifest, shards, card metadata, loads with `datasets`) and uploads "
                    "the card, manifest, parquet shards and the evaluation's plots of synthetic data as a dataset "
                    "repo (never eval/samples_real.png; local paths, the user name and real neighbours' stems are "
                    "removed from the card and JSON files). Interrupted? Run the same command again: files already "
                    "on the Hub are skipped. The token comes from `hf auth login` or HF_TOKEN and is never printed "
                    "or stored.")
    p.add_argument("dir", metavar="DIR", help="the dataset folder written by `fastsynth generate`")
    p.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="the dataset repository")
    p.add_argument("--private", action="store_true",
                   help="the repository must be private (created private; an existing public one is refused)")
    p.add_argument("--change-visibility", action="store_true",
                   help="make an existing repository private (--private) or public (no --private) instead of "
                        "refusing when its visibility differs")
    p.add_argument("--revision", default=None, help="branch to upload to (created if missing; default main)")
    p.add_argument("--dry-run", action="store_true", help="validate and list what would be uploaded; send nothing")
    p.add_argument("--include-real-pixels", action="store_true",
                   help="publish an inpaint dataset, whose rows keep the real source images' pixels outside each "
                        "regenerated region (refused without it); the card says so in its first lines")
    p.add_argument("--keep-source-names", action="store_true",
                   help="upload the source column (the real file stem each row was made from; in clinical data "
                        "often a patient identifier) as it is, instead of as a salted hash that still groups rows")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..publish.hub import publish

    plan = publish(args.dir, args.repo_id, private=args.private, revision=args.revision, dry_run=args.dry_run,
                   change_visibility=args.change_visibility, log=print,
                   include_real_pixels=args.include_real_pixels, keep_source_names=args.keep_source_names)
    mb = plan["bytes"] / 1e6
    head = "would upload" if plan["dry_run"] else "uploaded"
    print(f"{head} {len(plan['files'])} files ({mb:.1f} MB, {plan['validation']['rows']} pairs) to "
          f"datasets/{plan['repo_id']}@{plan['revision']}{' (private)' if plan['private'] else ''}")
    if plan["dry_run"]:
        for f in plan["files"]:
            print(f"  {f['path']}  {f['bytes']} B")
    else:
        print(plan["url"])
    return 0
